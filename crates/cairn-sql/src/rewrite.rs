//! Making writes deterministic before they enter the Raft log.
//!
//! Every replica applies the same SQL, so a write that calls `RANDOM()` or reads the clock
//! would leave the replicas different. Like rqlite ("Non-deterministic functions" in its
//! docs), the node that receives a write replaces `RANDOM()` (outside `ORDER BY`),
//! `RANDOMBLOB(n)` (with a literal `n`) and the `'now'` argument of SQLite's date and time
//! functions with literals, then proposes the rewritten text.

use std::ops::ControlFlow;

use rand::Rng;
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart, Query, Statement as Ast,
    Value as AstValue, VisitMut, VisitorMut,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

/// The largest `RANDOMBLOB(n)` rewritten; larger ones are left alone (and stay
/// non-deterministic) rather than putting megabytes of literal into the log.
const MAX_RANDOMBLOB: usize = 64 * 1024;

/// Returns `sql` with its non-deterministic calls replaced by literals, or `None` when
/// nothing needed replacing (the usual case, decided without parsing) or the statement is
/// not an INSERT, UPDATE, DELETE or SELECT (schema defaults such as
/// `DEFAULT (random())` must stay as written).
///
/// `now` is the time that `'now'` becomes; `rng` supplies the random values.
pub fn make_deterministic(
    sql: &str,
    now: chrono::DateTime<chrono::Utc>,
    rng: &mut impl Rng,
) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("random") && !lower.contains("now") {
        return None;
    }
    let mut stmts = Parser::parse_sql(&SQLiteDialect {}, sql).ok()?;
    let mut r = Rewriter {
        now: now.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        rng,
        order_by: Vec::new(),
        changed: false,
    };
    for s in &mut stmts {
        if matches!(
            s,
            Ast::Insert(_) | Ast::Update { .. } | Ast::Delete(_) | Ast::Query(_)
        ) {
            let _ = s.visit(&mut r);
        }
    }
    if !r.changed {
        return None;
    }
    Some(
        stmts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    )
}

struct Rewriter<'a, R: Rng> {
    now: String,
    rng: &'a mut R,
    /// ORDER BY clauses taken out of the queries being visited: `ORDER BY RANDOM()` shuffles
    /// rows but writes the same set, so it stays (rqlite does the same).
    order_by: Vec<Option<sqlparser::ast::OrderBy>>,
    changed: bool,
}

impl<R: Rng> VisitorMut for Rewriter<'_, R> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        self.order_by.push(query.order_by.take());
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        query.order_by = self.order_by.pop().flatten();
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let name = match f.name.0.as_slice() {
            [ObjectNamePart::Identifier(id)] => id.value.to_ascii_lowercase(),
            _ => return ControlFlow::Continue(()),
        };
        let args: Vec<&mut Expr> = match &mut f.args {
            FunctionArguments::List(list) => list
                .args
                .iter_mut()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        match name.as_str() {
            "random" if args.is_empty() => {
                let n: i64 = self.rng.gen();
                *expr = Expr::Value(AstValue::Number(n.to_string(), false).into());
                self.changed = true;
            }
            "randomblob" => {
                let len = match args.as_slice() {
                    [Expr::Value(v)] => match &v.value {
                        AstValue::Number(n, _) => n.parse::<i64>().ok(),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(len) = len {
                    let len = usize::try_from(len.max(1)).unwrap_or(1);
                    if len <= MAX_RANDOMBLOB {
                        let bytes: Vec<u8> = (0..len).map(|_| self.rng.gen()).collect();
                        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
                        *expr = Expr::Value(AstValue::HexStringLiteral(hex).into());
                        self.changed = true;
                    }
                }
            }
            "date" | "time" | "datetime" | "julianday" | "unixepoch" | "strftime" | "timediff" => {
                for a in args {
                    if let Expr::Value(v) = a {
                        if let AstValue::SingleQuotedString(s) = &v.value {
                            if s.eq_ignore_ascii_case("now") {
                                *a = Expr::Value(
                                    AstValue::SingleQuotedString(self.now.clone()).into(),
                                );
                                self.changed = true;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rewrite(sql: &str) -> Option<String> {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("valid time");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        make_deterministic(sql, now, &mut rng)
    }

    #[test]
    fn leaves_plain_sql_alone() {
        assert_eq!(rewrite("INSERT INTO t VALUES (1)"), None);
        assert_eq!(rewrite("CREATE TABLE t (a DEFAULT (random()))"), None);
        assert_eq!(rewrite("SELECT * FROM t ORDER BY random()"), None);
    }

    #[test]
    fn replaces_random_and_now() {
        let out =
            rewrite("INSERT INTO t(a, b, c) VALUES (random(), randomblob(4), datetime('now'))")
                .expect("rewritten");
        assert!(!out.to_ascii_lowercase().contains("random"), "{out}");
        assert!(out.contains("'2023-11-14 22:13:20.000'"), "{out}");
        assert!(out.contains("X'"), "{out}");
    }

    #[test]
    fn keeps_order_by_random_in_insert_select() {
        let out = rewrite("INSERT INTO t SELECT random() FROM u ORDER BY random() LIMIT 1")
            .expect("rewritten");
        assert!(out.contains("ORDER BY random()"), "{out}");
        assert_eq!(out.matches("random").count(), 1, "{out}");
    }
}
