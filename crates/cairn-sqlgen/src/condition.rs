//! Seed 004's `condition` strings (`"student_id = 1001"`), parsed with sqlparser and
//! accepted only when they are made of column references, literals, comparisons,
//! AND/OR/NOT, IN, LIKE, BETWEEN and IS [NOT] NULL. Anything else (a subquery, a second
//! statement, a function call) is refused before anything runs. The accepted expression is
//! re-rendered with every literal as a bound parameter.

use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value as AstValue};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::builder::{quote_ident, Fragment};
use cairn_sql::Error;
use cairn_sql::Value;

/// Longest condition accepted, in bytes.
const MAX_CONDITION: usize = 4096;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 32;

/// Parses `cond` into a ` WHERE ...` fragment (empty for an empty condition).
///
/// # Errors
/// [`Error::BadRequest`] naming what is not allowed; [`Error::BadIdentifier`] for a bad
/// column name.
pub fn parse_condition(cond: &str) -> Result<Fragment, Error> {
    let cond = cond.trim();
    if cond.is_empty() {
        return Ok(Fragment::default());
    }
    if cond.len() > MAX_CONDITION {
        return Err(Error::BadRequest(format!(
            "condition longer than {MAX_CONDITION} bytes"
        )));
    }
    let bad =
        |e: &dyn std::fmt::Display| Error::BadRequest(format!("invalid condition {cond:?}: {e}"));
    let mut parser = Parser::new(&SQLiteDialect {})
        .try_with_sql(cond)
        .map_err(|e| bad(&e))?;
    let expr = parser.parse_expr().map_err(|e| bad(&e))?;
    if parser.peek_token().token != Token::EOF {
        return Err(bad(
            &"unexpected text after the expression (only one expression is allowed)",
        ));
    }
    let mut frag = Fragment::default();
    let sql = render(&expr, &mut frag.params, 0)?;
    frag.sql = format!(" WHERE {sql}");
    Ok(frag)
}

fn render(e: &Expr, params: &mut Vec<Value>, depth: usize) -> Result<String, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::BadRequest("condition nested too deeply".into()));
    }
    let r = |e: &Expr, p: &mut Vec<Value>| render(e, p, depth + 1);
    Ok(match e {
        Expr::Identifier(id) => quote_ident(&id.value)?,
        Expr::Value(v) => {
            params.push(literal(&v.value)?);
            "?".into()
        }
        Expr::Nested(inner) => format!("({})", r(inner, params)?),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => format!("NOT {}", r(expr, params)?),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => {
                let lit = literal(&v.value)?;
                params.push(match lit {
                    Value::Integer(i) => Value::Integer(-i),
                    Value::Real(f) => Value::Real(-f),
                    _ => {
                        return Err(Error::BadRequest(
                            "unary minus applies to numbers only".into(),
                        ))
                    }
                });
                "?".into()
            }
            _ => {
                return Err(Error::BadRequest(
                    "unary minus applies to numbers only".into(),
                ))
            }
        },
        Expr::BinaryOp { left, op, right } => {
            let sym = match op {
                BinaryOperator::Eq => "=",
                BinaryOperator::NotEq => "<>",
                BinaryOperator::Lt => "<",
                BinaryOperator::LtEq => "<=",
                BinaryOperator::Gt => ">",
                BinaryOperator::GtEq => ">=",
                BinaryOperator::And => "AND",
                BinaryOperator::Or => "OR",
                other => {
                    return Err(Error::BadRequest(format!(
                        "operator {other} is not allowed in a condition"
                    )))
                }
            };
            let l = r(left, params)?;
            let rr = r(right, params)?;
            format!("{l} {sym} {rr}")
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let col = r(expr, params)?;
            let items = list
                .iter()
                .map(|x| r(x, params))
                .collect::<Result<Vec<_>, _>>()?;
            format!(
                "{col} {}IN ({})",
                if *negated { "NOT " } else { "" },
                items.join(", ")
            )
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let col = r(expr, params)?;
            let lo = r(low, params)?;
            let hi = r(high, params)?;
            format!(
                "{col} {}BETWEEN {lo} AND {hi}",
                if *negated { "NOT " } else { "" }
            )
        }
        Expr::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => {
            let col = r(expr, params)?;
            let pat = r(pattern, params)?;
            format!("{col} {}LIKE {pat}", if *negated { "NOT " } else { "" })
        }
        Expr::IsNull(inner) => format!("{} IS NULL", r(inner, params)?),
        Expr::IsNotNull(inner) => format!("{} IS NOT NULL", r(inner, params)?),
        other => {
            let kind = match other {
                Expr::Function(_) => "a function call",
                Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => "a subquery",
                Expr::CompoundIdentifier(_) => "a qualified name",
                _ => "this expression",
            };
            return Err(Error::BadRequest(format!(
                "{kind} is not allowed in a condition: {other}"
            )));
        }
    })
}

fn literal(v: &AstValue) -> Result<Value, Error> {
    Ok(match v {
        AstValue::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Real(
                n.parse::<f64>()
                    .map_err(|_| Error::BadRequest(format!("bad number {n}")))?,
            ),
        },
        AstValue::SingleQuotedString(s) | AstValue::DoubleQuotedString(s) => Value::Text(s.clone()),
        AstValue::Boolean(b) => Value::Integer(i64::from(*b)),
        AstValue::Null => Value::Null,
        other => {
            return Err(Error::BadRequest(format!(
                "literal {other} is not allowed in a condition"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_grammar() {
        let f = parse_condition("student_id = 1001 AND (grade IN ('A','B') OR name LIKE 'Al%') AND age BETWEEN 10 AND -2 AND x IS NOT NULL AND NOT y <> 'z'")
            .expect("allowed");
        assert_eq!(
            f.sql,
            " WHERE [student_id] = ? AND ([grade] IN (?, ?) OR [name] LIKE ?) AND [age] BETWEEN ? AND ? AND [x] IS NOT NULL AND NOT [y] <> ?"
        );
        assert_eq!(f.params[0], Value::Integer(1001));
        assert_eq!(f.params[5], Value::Integer(-2));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "1=1; DROP TABLE students",
            "id = (SELECT max(id) FROM t)",
            "id IN (SELECT id FROM t)",
            "load_extension('x') = 1",
            "random() > 0",
            "a = b || 'x'",
            "t.id = 1",
            "EXISTS (SELECT 1)",
            "\"weird name\" = 1",
        ] {
            assert!(parse_condition(bad).is_err(), "{bad} must be refused");
        }
        assert_eq!(parse_condition("  ").expect("empty is fine").sql, "");
        // A trailing comment is dropped by the re-rendering, so it cannot hide anything.
        assert_eq!(
            parse_condition("id = 1 -- x").expect("comment").sql,
            " WHERE [id] = ?"
        );
    }
}
