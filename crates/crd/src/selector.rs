//! Calico label selectors (`nodeSelector`, `peerSelector`): parser and evaluator.
//!
//! Grammar (Calico's `libcalico-go/lib/selector`, no RFC):
//!
//! ```text
//! selector := ""                       (matches everything, like all())
//!           | or
//! or       := and ( "||" and )*
//! and      := unary ( "&&" unary )*
//! unary    := "!" unary | primary
//! primary  := "(" or ")" | "all()" | "global()" | "has(" label ")"
//!           | label "==" string | label "!=" string
//!           | label "in" set | label "not in" set
//!           | label "contains" string | label "starts with" string | label "ends with" string
//! set      := "{" [ string ( "," string )* [ "," ] ] "}"
//! string   := '...' | "..."            (no escapes)
//! label    := [A-Za-z0-9_./-]+         (at most 512 characters)
//! ```
//!
//! `!` binds tighter than `&&`, which binds tighter than `||`. A label that is
//! absent never equals a value: `k != 'v'` and `k not in {...}` are true when
//! `k` is absent, `k == 'v'`, `k in {...}`, `contains`, `starts with` and
//! `ends with` are false. `global()` matches objects outside any namespace,
//! which includes every Node. Parsing never panics: nesting is limited to
//! [`MAX_DEPTH`] and every error carries the byte offset where it was found.

use std::collections::BTreeMap;
use std::fmt;

/// Maximum nesting of parentheses and `!`.
pub const MAX_DEPTH: usize = 64;
/// Maximum length of a label (Calico's limit).
pub const MAX_LABEL_LEN: usize = 512;

/// The regular expression of one term of the selector grammar (RE2 syntax).
macro_rules! selector_term {
    () => {
        concat!(
            r#"(all\s*\(\s*\)|global\s*\(\s*\)|has\s*\(\s*[A-Za-z0-9_./-]+\s*\)"#,
            r#"|[A-Za-z0-9_./-]+\s*(==|!=)\s*('[^']*'|"[^"]*")"#,
            r#"|[A-Za-z0-9_./-]+\s+(not\s*)?in\s*\{\s*(('[^']*'|"[^"]*")\s*(,\s*('[^']*'|"[^"]*")\s*)*,?\s*)?\}"#,
            r#"|[A-Za-z0-9_./-]+\s+(contains|starts\s*with|ends\s*with)\s*('[^']*'|"[^"]*"))"#
        )
    };
}
/// A CEL rule (for the CRDs' `x-kubernetes-validations`) that accepts what
/// [`Selector::parse`] accepts, up to the balance of parentheses and the
/// nesting limit, which a regular expression cannot check (the agent still
/// reports those): terms joined by `&&` / `||`, each with any `!` and `(`
/// before and `)` after.
pub const SELECTOR_CEL_RULE: &str = concat!(
    r#"self.matches(r"""^\s*([\s(!]*"#,
    selector_term!(),
    r#"[\s)]*(\s*(&&|\|\|)[\s(!]*"#,
    selector_term!(),
    r#"[\s)]*)*)?\s*$""")"#
);

/// The message of [`SELECTOR_CEL_RULE`].
pub const SELECTOR_CEL_MESSAGE: &str = "must be a selector in Calico syntax, such as all(), rack == 'r1', has(label), zone in {'a', 'b'}, joined with &&, || and !";

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    source: String,
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    All,
    Global,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// A selector that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {selector:?} at position {position}: {reason}")]
pub struct SelectorError {
    pub selector: String,
    /// Byte offset in the selector (0-based).
    pub position: usize,
    pub reason: String,
}

impl Selector {
    /// Parses a selector. The empty (or all-whitespace) selector matches everything.
    pub fn parse(source: &str) -> Result<Selector, SelectorError> {
        let mut p = Parser {
            src: source,
            pos: 0,
            depth: 0,
        };
        p.skip_ws();
        let expr = if p.at_end() { Expr::All } else { p.parse_or()? };
        p.skip_ws();
        if !p.at_end() {
            return Err(p.error("unexpected content after the end of the selector"));
        }
        Ok(Selector {
            source: source.to_string(),
            expr,
        })
    }

    /// The selector as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the selector against a label set.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        eval(&self.expr, &|k| labels.get(k).map(String::as_str))
    }

    /// Evaluates the selector against optional labels (as found in `ObjectMeta`).
    pub fn matches_opt(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        eval(&self.expr, &|k| {
            labels.and_then(|l| l.get(k)).map(String::as_str)
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn eval<'a>(e: &Expr, get: &dyn Fn(&str) -> Option<&'a str>) -> bool {
    match e {
        Expr::All | Expr::Global => true,
        Expr::Has(k) => get(k).is_some(),
        Expr::Eq(k, v) => get(k) == Some(v.as_str()),
        Expr::Ne(k, v) => get(k) != Some(v.as_str()),
        Expr::In(k, set) => get(k).is_some_and(|x| set.iter().any(|v| v == x)),
        Expr::NotIn(k, set) => !get(k).is_some_and(|x| set.iter().any(|v| v == x)),
        Expr::Contains(k, v) => get(k).is_some_and(|x| x.contains(v.as_str())),
        Expr::StartsWith(k, v) => get(k).is_some_and(|x| x.starts_with(v.as_str())),
        Expr::EndsWith(k, v) => get(k).is_some_and(|x| x.ends_with(v.as_str())),
        Expr::Not(inner) => !eval(inner, get),
        Expr::And(v) => v.iter().all(|x| eval(x, get)),
        Expr::Or(v) => v.iter().any(|x| eval(x, get)),
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

fn is_label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-')
}

impl<'a> Parser<'a> {
    fn error(&self, reason: impl Into<String>) -> SelectorError {
        self.error_at(self.pos, reason)
    }

    fn error_at(&self, position: usize, reason: impl Into<String>) -> SelectorError {
        SelectorError {
            selector: self.src.to_string(),
            position,
            reason: reason.into(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
    }

    /// Consumes `tok` (after whitespace) if present.
    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    /// Consumes a keyword followed by a word boundary.
    fn eat_keyword(&mut self, word: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        if let Some(after) = rest.strip_prefix(word)
            && !after.bytes().next().is_some_and(is_label_char)
        {
            self.pos += word.len();
            return true;
        }
        false
    }

    /// Consumes two keywords separated by optional whitespace ("not in",
    /// "starts with"; Calico also accepts "notin").
    fn eat_keywords(&mut self, first: &str, second: &str) -> bool {
        let save = self.pos;
        self.skip_ws();
        if self.rest().starts_with(first) {
            self.pos += first.len();
            if self.eat_keyword(second) {
                return true;
            }
        }
        self.pos = save;
        false
    }

    fn enter(&mut self) -> Result<(), SelectorError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expr, SelectorError> {
        let mut items = vec![self.parse_and()?];
        while self.eat("||") {
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Expr, SelectorError> {
        let mut items = vec![self.parse_unary()?];
        while self.eat("&&") {
            items.push(self.parse_unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn parse_unary(&mut self) -> Result<Expr, SelectorError> {
        // Count negations iteratively: "!!!x" does not recurse.
        let mut negations = 0usize;
        loop {
            self.skip_ws();
            if self.rest().starts_with("!=") {
                return Err(self.error("expected an expression, found '!='"));
            }
            if self.eat("!") {
                negations += 1;
            } else {
                break;
            }
        }
        let e = self.parse_primary()?;
        Ok(if negations % 2 == 1 {
            Expr::Not(Box::new(e))
        } else {
            e
        })
    }

    fn parse_primary(&mut self) -> Result<Expr, SelectorError> {
        self.skip_ws();
        if self.at_end() {
            return Err(self.error("unexpected end of selector, expected an expression"));
        }
        if self.eat("(") {
            self.enter()?;
            let e = self.parse_or()?;
            if !self.eat(")") {
                return Err(self.error("expected ')'"));
            }
            self.depth -= 1;
            return Ok(e);
        }
        for (name, expr) in [("all", Expr::All), ("global", Expr::Global)] {
            let save = self.pos;
            if self.eat_keyword(name) && self.eat("(") {
                if !self.eat(")") {
                    return Err(self.error(format!("expected ')' after {name}(")));
                }
                return Ok(expr);
            }
            self.pos = save;
        }
        let save = self.pos;
        if self.eat_keyword("has") && self.eat("(") {
            self.skip_ws();
            let label = self.parse_label()?;
            if !self.eat(")") {
                return Err(self.error("expected ')' after the label in has("));
            }
            return Ok(Expr::Has(label));
        }
        self.pos = save;
        let label = self.parse_label()?;
        if self.eat("==") {
            return Ok(Expr::Eq(label, self.parse_string()?));
        }
        if self.eat("!=") {
            return Ok(Expr::Ne(label, self.parse_string()?));
        }
        if self.eat_keywords("not", "in") {
            return Ok(Expr::NotIn(label, self.parse_set()?));
        }
        if self.eat_keyword("in") {
            return Ok(Expr::In(label, self.parse_set()?));
        }
        if self.eat_keyword("contains") {
            return Ok(Expr::Contains(label, self.parse_string()?));
        }
        if self.eat_keywords("starts", "with") {
            return Ok(Expr::StartsWith(label, self.parse_string()?));
        }
        if self.eat_keywords("ends", "with") {
            return Ok(Expr::EndsWith(label, self.parse_string()?));
        }
        self.skip_ws();
        Err(self.error(format!(
            "expected an operator after label {label:?} (==, !=, in, not in, contains, starts with, ends with)"
        )))
    }

    fn parse_label(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let start = self.pos;
        let len = self
            .rest()
            .bytes()
            .take_while(|c| is_label_char(*c))
            .count();
        if len == 0 {
            let found = self
                .rest()
                .chars()
                .next()
                .map(|c| format!("{c:?}"))
                .unwrap_or_else(|| "end".into());
            return Err(self.error(format!("expected a label, found {found}")));
        }
        if len > MAX_LABEL_LEN {
            return Err(self.error_at(
                start,
                format!("label longer than {MAX_LABEL_LEN} characters"),
            ));
        }
        self.pos += len;
        Ok(self.src[start..self.pos].to_string())
    }

    fn parse_string(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let start = self.pos;
        let quote = match self.rest().chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.error("expected a quoted string ('...' or \"...\")")),
        };
        let body = &self.rest()[1..];
        match body.find(quote) {
            Some(end) => {
                self.pos += 1 + end + 1;
                Ok(body[..end].to_string())
            }
            None => Err(self.error_at(start, "unterminated string")),
        }
    }

    fn parse_set(&mut self) -> Result<Vec<String>, SelectorError> {
        if !self.eat("{") {
            return Err(self.error("expected '{' to start a set"));
        }
        let mut values = Vec::new();
        loop {
            if self.eat("}") {
                return Ok(values);
            }
            values.push(self.parse_string()?);
            if self.eat(",") {
                continue;
            }
            if self.eat("}") {
                return Ok(values);
            }
            return Err(self.error("expected ',' or '}' in set"));
        }
    }
}

#[cfg(test)]
#[path = "selector_tests.rs"]
mod tests;
