//! Tab completion for the shell: dot-commands at the start of a line; elsewhere table and
//! column names (read from the database, see [`Names`]) and SQL keywords.
//!
//! The completer runs inside rustyline's blocking `readline`, so it never talks to the
//! network: the shell refreshes [`Names`] between statements (at start, after a schema
//! change, after `.db`) and the completer reads the latest copy.

use std::sync::{Arc, Mutex, PoisonError};

use rustyline::completion::Completer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

/// The dot-commands, for completion and `.help`.
pub const DOT_COMMANDS: &[&str] = &[
    ".backup",
    ".consistency",
    ".databases",
    ".db",
    ".dump",
    ".exit",
    ".help",
    ".import",
    ".indexes",
    ".leader",
    ".mode",
    ".nodes",
    ".quit",
    ".read",
    ".restore",
    ".schema",
    ".status",
    ".tables",
    ".timer",
];

/// SQL keywords offered after the names.
const KEYWORDS: &[&str] = &[
    "ALTER",
    "AND",
    "AS",
    "ASC",
    "BETWEEN",
    "BY",
    "CREATE",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DROP",
    "EXISTS",
    "EXPLAIN",
    "FROM",
    "GROUP",
    "HAVING",
    "INDEX",
    "INSERT",
    "INTEGER",
    "INTO",
    "JOIN",
    "LEFT",
    "LIKE",
    "LIMIT",
    "NOT",
    "NULL",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "PRAGMA",
    "PRIMARY",
    "KEY",
    "REAL",
    "REFERENCES",
    "SELECT",
    "SET",
    "TABLE",
    "TEXT",
    "BLOB",
    "UNIQUE",
    "UPDATE",
    "VALUES",
    "VIEW",
    "WHERE",
    "WITH",
];

/// The most names kept for completion (a schema of thousands of tables stays cheap).
pub const MAX_NAMES: usize = 10_000;

/// The table and column names of the current database.
#[derive(Debug, Default, Clone)]
pub struct Names {
    /// Tables and views.
    pub tables: Vec<String>,
    /// Columns of every table and view (deduplicated).
    pub columns: Vec<String>,
}

/// The shell's rustyline helper: completion only (no hints, colours or validation).
#[derive(Debug, Clone, Default)]
pub struct ShellHelper {
    names: Arc<Mutex<Names>>,
}

impl ShellHelper {
    /// A helper with no names yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the names offered; names holding control characters are not offered (a
    /// completion is echoed to the terminal as it is).
    pub fn set_names(&self, mut names: Names) {
        let printable = |n: &String| !n.chars().any(char::is_control);
        names.tables.retain(printable);
        names.columns.retain(printable);
        *self.names.lock().unwrap_or_else(PoisonError::into_inner) = names;
    }

    /// The candidates for the word that ends at byte `pos` of `line`, and where it starts.
    pub fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let pos = pos.min(line.len());
        let Some(before) = line.get(..pos) else {
            return (pos, Vec::new());
        };
        let start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '.')
            .last()
            .map_or(pos, |(i, _)| i);
        let word = &before[start..];
        if word.starts_with('.') && before[..start].trim().is_empty() {
            let found = DOT_COMMANDS
                .iter()
                .filter(|c| c.starts_with(word))
                .map(|c| c.to_string())
                .collect();
            return (start, found);
        }
        // `t.col`: complete the column after the dot.
        let (start, word) = match word.rfind('.') {
            Some(dot) => (start + dot + 1, &word[dot + 1..]),
            None => (start, word),
        };
        if word.is_empty() {
            return (start, Vec::new());
        }
        let lower = word.to_lowercase();
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<String> = names
            .tables
            .iter()
            .chain(&names.columns)
            .filter(|n| n.to_lowercase().starts_with(&lower))
            .cloned()
            .collect();
        drop(names);
        found.sort();
        found.dedup();
        let typed_lower = word.chars().all(|c| !c.is_uppercase());
        found.extend(
            KEYWORDS
                .iter()
                .filter(|k| k.to_lowercase().starts_with(&lower))
                .map(|k| {
                    if typed_lower {
                        k.to_lowercase()
                    } else {
                        k.to_string()
                    }
                }),
        );
        (start, found)
    }
}

impl Completer for ShellHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        Ok(self.candidates(line, pos))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper() -> ShellHelper {
        let h = ShellHelper::new();
        h.set_names(Names {
            tables: vec!["fruit".into(), "farm".into()],
            columns: vec!["id".into(), "name".into(), "flavour".into()],
        });
        h
    }

    #[test]
    fn names_and_keywords_complete_the_word_at_the_cursor() {
        let h = helper();
        let line = "SELECT na FROM fr";
        assert_eq!(
            h.candidates(line, line.len()),
            (15, vec!["fruit".into(), "from".into()])
        );
        assert_eq!(h.candidates(line, 9), (7, vec!["name".to_string()]));
        let (start, found) = h.candidates("select * f", 10);
        assert_eq!(start, 9);
        assert_eq!(found, vec!["farm", "flavour", "fruit", "from"]);
        assert_eq!(
            h.candidates("SELECT fruit.fl", 15),
            (13, vec!["flavour".to_string()])
        );
        assert_eq!(h.candidates("SELECT ", 7), (7, Vec::<String>::new()));
    }

    #[test]
    fn dot_commands_complete_at_the_start_of_a_line() {
        let h = helper();
        assert_eq!(h.candidates(".ta", 3), (0, vec![".tables".to_string()]));
        let (_, found) = h.candidates(" .s", 3);
        assert_eq!(found, vec![".schema", ".status"]);
        // A position past the end or inside a character is not a panic.
        assert_eq!(h.candidates("é", 1).1, Vec::<String>::new());
        assert_eq!(h.candidates("x", 99).0, 0);
    }
}
