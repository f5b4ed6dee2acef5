//! Splitting the shell's input into SQL statements.
//!
//! A statement ends at a `;` outside string literals, quoted identifiers (`"..."`,
//! `` `...` ``, `[...]`) and comments (`-- ...`, `/* ... */`), except inside the body of a
//! `CREATE TRIGGER ... BEGIN ...; END;`. That is the rule of SQLite's own
//! `sqlite3_complete()` (`src/complete.c`), whose eight-state machine this module ports, so
//! the shell cuts exactly where the `sqlite3` command-line shell does.

/// What the lexer saw, in `sqlite3_complete()`'s token classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Semi,
    Ws,
    Other,
    Explain,
    Create,
    Temp,
    Trigger,
    End,
}

/// `sqlite3_complete()`'s transitions: `TRANS[state][class]`. States: 0 invalid, 1 start,
/// 2 normal, 3 explain, 4 create, 5 trigger, 6 semi (in a trigger), 7 end (in a trigger).
/// A statement is complete when a `;` leads to state 1.
const TRANS: [[u8; 8]; 8] = [
    // Semi Ws Other Explain Create Temp Trigger End
    [1, 0, 2, 3, 4, 2, 2, 2], // 0 invalid
    [1, 1, 2, 3, 4, 2, 2, 2], // 1 start
    [1, 2, 2, 2, 2, 2, 2, 2], // 2 normal
    [1, 3, 3, 2, 4, 2, 2, 2], // 3 explain
    [1, 4, 2, 2, 2, 4, 5, 2], // 4 create
    [6, 5, 5, 5, 5, 5, 5, 5], // 5 trigger
    [6, 6, 5, 5, 5, 5, 5, 7], // 6 semi
    [1, 7, 5, 5, 5, 5, 5, 5], // 7 end
];

/// One token: its class and where it is in the text (byte offsets).
#[derive(Debug, Clone, Copy)]
struct Token {
    class: Class,
    /// Whether it is a bare word (a keyword or an unquoted name).
    word: bool,
    start: usize,
    end: usize,
}

/// What the text ends inside of, when it ends before a token does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// A `/* ...` comment.
    Comment,
    /// A string literal or a quoted name.
    Quote,
}

/// The tokens of `text`, and what it ends inside of (then more input is needed before
/// anything after the last token can end).
fn lex(text: &str) -> (Vec<Token>, Option<Open>) {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        let (class, word) = match b {
            b';' => {
                i += 1;
                (Class::Semi, false)
            }
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c => {
                i += 1;
                (Class::Ws, false)
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                match find(bytes, i + 2, b"*/") {
                    Some(end) => i = end + 2,
                    None => return (tokens, Some(Open::Comment)),
                }
                (Class::Ws, false)
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                // To the end of the line, or of the text.
                i = find(bytes, i, b"\n").map_or(bytes.len(), |end| end + 1);
                (Class::Ws, false)
            }
            b'[' | b'`' | b'"' | b'\'' => {
                let close = if b == b'[' { b']' } else { b };
                match find(bytes, i + 1, &[close]) {
                    Some(end) => i = end + 1,
                    None => return (tokens, Some(Open::Quote)),
                }
                (Class::Other, false)
            }
            b if is_word_byte(b) => {
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                (keyword_class(&text[start..i]), true)
            }
            _ => {
                // One character (a UTF-8 sequence is taken whole by the word arm).
                i += 1;
                (Class::Other, false)
            }
        };
        tokens.push(Token {
            class,
            word,
            start,
            end: i,
        });
    }
    (tokens, None)
}

/// Bytes of an unquoted name, as `sqlite3_complete()` counts them (non-ASCII included).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn keyword_class(word: &str) -> Class {
    match word.to_ascii_lowercase().as_str() {
        "create" => Class::Create,
        "temp" | "temporary" => Class::Temp,
        "trigger" => Class::Trigger,
        "end" => Class::End,
        "explain" => Class::Explain,
        _ => Class::Other,
    }
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The complete statements at the start of `text` (trimmed, without their final `;`,
/// empty ones left out) and the byte offset where the incomplete rest begins.
fn split_complete(text: &str) -> (Vec<String>, usize) {
    let (tokens, _open) = lex(text);
    let mut statements = Vec::new();
    let mut state = 0u8;
    let mut begin = 0;
    let mut content = false;
    for t in tokens {
        state = TRANS[usize::from(state)][t.class as usize];
        match t.class {
            Class::Semi if state == 1 => {
                if content {
                    statements.push(text[begin..t.start].trim().to_string());
                }
                begin = t.end;
                content = false;
            }
            Class::Ws | Class::Semi => {}
            _ => content = true,
        }
    }
    (statements, begin)
}

/// Whether `text` holds anything but whitespace, comments and `;`.
fn has_content(text: &str) -> bool {
    let (tokens, open) = lex(text);
    open == Some(Open::Quote)
        || tokens
            .iter()
            .any(|t| !matches!(t.class, Class::Ws | Class::Semi))
}

/// Accumulates input and hands out complete statements.
#[derive(Debug, Default)]
pub struct Splitter {
    pending: String,
}

impl Splitter {
    /// An empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `text` (a line with its newline, or a whole script) and returns every
    /// statement it completed, trimmed, without the final `;`.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.pending.push_str(text);
        let (statements, rest) = split_complete(&self.pending);
        self.pending.drain(..rest);
        statements
    }

    /// Whether no statement has begun: what is pending is only whitespace and comments.
    pub fn is_blank(&self) -> bool {
        !has_content(&self.pending)
    }

    /// Forgets the pending text (Ctrl-C at a continuation prompt).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// At the end of the input: the last statement when it lacks only its `;` (as the
    /// `sqlite3` shell runs it), nothing when only blanks are left.
    ///
    /// # Errors
    /// When the input ends inside a string, a quoted name, a comment or a trigger body;
    /// the message quotes the start of the pending text.
    pub fn finish(&mut self) -> Result<Option<String>, String> {
        let pending = std::mem::take(&mut self.pending);
        if !has_content(&pending) {
            return Ok(None);
        }
        let closed = format!("{pending}\n;");
        let (statements, rest) = split_complete(&closed);
        match statements.as_slice() {
            [one] if rest == closed.len() => Ok(Some(one.clone())),
            _ => {
                let start: String = pending.trim().chars().take(60).collect();
                Err(format!(
                    "incomplete input at the end (an unclosed string, comment or trigger?): \
                     {start:?}"
                ))
            }
        }
    }
}

/// Every statement of a whole script (the last one may lack its `;`); the tests' way to
/// split one at once.
///
/// # Errors
/// When the script ends inside a string, comment or trigger body.
#[cfg(test)]
pub fn split_script(script: &str) -> Result<Vec<String>, String> {
    let mut splitter = Splitter::new();
    let mut statements = splitter.push(script);
    statements.extend(splitter.finish()?);
    Ok(statements)
}

/// The bare words of `sql` (keywords and unquoted names), upper-cased, in order.
fn words(sql: &str) -> impl Iterator<Item = String> + '_ {
    let (tokens, _) = lex(sql);
    tokens
        .into_iter()
        .filter(|t| t.word)
        .map(move |t| sql[t.start..t.end].to_ascii_uppercase())
}

/// The first keyword of `sql`, upper-cased (`SELECT`, `CREATE`, ...), if any.
pub fn first_keyword(sql: &str) -> Option<String> {
    words(sql).next()
}

/// Whether `sql` only reads, so that sending it twice is harmless: `SELECT`, `VALUES`,
/// `EXPLAIN ...`, a `PRAGMA` without `=` or `(`, a `WITH` that neither inserts, updates nor
/// deletes. The node decides for itself where a statement runs (`/db/request`); this
/// only decides whether a lost answer may be asked for again.
pub fn is_read(sql: &str) -> bool {
    let Some(first) = first_keyword(sql) else {
        return false;
    };
    match first.as_str() {
        "SELECT" | "VALUES" | "EXPLAIN" => true,
        // `PRAGMA x = v` and `PRAGMA x(v)` both set; only the bare form surely reads.
        "PRAGMA" => {
            let (tokens, _) = lex(sql);
            !tokens
                .iter()
                .any(|t| t.class == Class::Other && matches!(&sql[t.start..t.end], "=" | "("))
        }
        "WITH" => {
            !words(sql).any(|w| matches!(w.as_str(), "INSERT" | "UPDATE" | "DELETE" | "REPLACE"))
        }
        _ => false,
    }
}

/// Whether `sql` changes the schema (`CREATE`, `DROP`, `ALTER`), so that the names the
/// shell completes should be read again.
pub fn changes_schema(sql: &str) -> bool {
    matches!(
        first_keyword(sql).as_deref(),
        Some("CREATE" | "DROP" | "ALTER")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(script: &str) -> Vec<String> {
        match split_script(script) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn statements_end_at_semicolons_outside_literals_and_comments() {
        assert_eq!(
            split("SELECT 1; SELECT 'a;b';\nINSERT INTO \"x;y\" VALUES ([c;]);"),
            vec![
                "SELECT 1",
                "SELECT 'a;b'",
                "INSERT INTO \"x;y\" VALUES ([c;])"
            ]
        );
        assert_eq!(
            split("SELECT 1 -- a comment; still a comment\n+ 1; /* ; */ SELECT `q;`;"),
            vec![
                "SELECT 1 -- a comment; still a comment\n+ 1",
                "/* ; */ SELECT `q;`"
            ]
        );
        assert_eq!(split("SELECT 'it''s; fine';"), vec!["SELECT 'it''s; fine'"]);
        assert!(split(" ;; -- nothing\n ; /* */ ").is_empty());
    }

    #[test]
    fn a_trigger_body_keeps_its_semicolons() {
        let trigger = "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN\n  \
                       UPDATE t SET n = n + 1; DELETE FROM u;\nEND";
        assert_eq!(
            split(&format!("{trigger};\nSELECT 2;")),
            vec![trigger.to_string(), "SELECT 2".to_string()]
        );
        // Inside the body, a `;` does not end the statement.
        let (done, rest) = split_complete("create trigger x after delete on t begin select 1; ");
        assert!(done.is_empty());
        assert_eq!(rest, 0);
    }

    #[test]
    fn lines_accumulate_until_the_statement_ends() {
        let mut s = Splitter::new();
        assert!(s.push("SELECT 'multi\n").is_empty());
        assert!(!s.is_blank());
        assert!(s.push("line;' AS x\n").is_empty());
        assert_eq!(
            s.push("; SELECT 2").as_slice(),
            ["SELECT 'multi\nline;' AS x"]
        );
        assert_eq!(s.finish(), Ok(Some("SELECT 2".to_string())));
        assert!(s.is_blank());
        s.push("-- only a comment\n");
        assert!(s.is_blank());
        assert_eq!(s.finish(), Ok(None));
    }

    #[test]
    fn input_that_ends_inside_a_string_is_an_error() {
        assert!(split_script("SELECT 'open").is_err());
        assert!(split_script("CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1;").is_err());
        assert!(split_script("SELECT 1 /* open").is_err());
        assert_eq!(split("SELECT 1; /* an open comment"), vec!["SELECT 1"]);
        // A stray multi-byte character is one token, not a panic.
        assert_eq!(split("SELECT 'é' ; ¤;"), vec!["SELECT 'é'", "¤"]);
    }

    #[test]
    fn reads_are_told_from_writes() {
        for read in [
            "select 1",
            "  /* c */ SELECT * FROM t",
            "EXPLAIN QUERY PLAN SELECT 1",
            "PRAGMA foreign_keys",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "VALUES (1)",
        ] {
            assert!(is_read(read), "{read}");
        }
        for write in [
            "INSERT INTO t VALUES (1)",
            "PRAGMA user_version = 3",
            // The call form sets too; a reporting pragma with an argument is taken for a
            // write, which only means a lost answer is not asked for again.
            "PRAGMA user_version(5)",
            "PRAGMA table_info(t)",
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
            "CREATE TABLE t (a)",
            "",
        ] {
            assert!(!is_read(write), "{write}");
        }
        assert!(changes_schema("create index i on t(a)"));
        assert!(!changes_schema("SELECT 'CREATE'"));
    }
}
