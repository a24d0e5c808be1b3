//! Kubernetes label and field selectors (k8s.io/apimachinery/pkg/labels, .../fields).
//!
//! A [`Selector`] is a list of requirements, all of which must hold (AND). It is built from the
//! string form (`app=web,tier in (a,b),!canary`) by [`Selector::parse`], whose grammar and error
//! messages follow upstream's lexer and parser, or from the structured form of a
//! `metav1.LabelSelector` (`matchLabels` + `matchExpressions`) by [`Selector::from_structured`].
//!
//! Matching one selector against many label sets is the hot path (watch fan-out, the scheduler's
//! affinity and spread, endpoints). [`LabelTable`] stores many label sets as interned ids in CSR
//! form; a selector is compiled once against the table's interner ([`CompiledSelector`]) and then
//! each set is checked with integer compares only.

use std::collections::HashMap;
use std::fmt;

use crate::validation;

/// A selector operator. `=`/`==`/`!=` are kept apart from `in`/`notin` so that the selector
/// prints back as it was written (upstream does the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Op {
    /// The structured (`matchExpressions`) name of the operator.
    pub fn name(self) -> &'static str {
        match self {
            Op::Equals | Op::DoubleEquals => "=",
            Op::NotEquals => "!=",
            Op::In => "In",
            Op::NotIn => "NotIn",
            Op::Exists => "Exists",
            Op::DoesNotExist => "DoesNotExist",
            Op::GreaterThan => "Gt",
            Op::LessThan => "Lt",
        }
    }
}

/// One requirement: `key op values`. Values are sorted and deduplicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

/// Parse an int64 as Go's strconv.ParseInt(s, 10, 64) does (optional sign, decimal digits).
fn parse_i64(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

impl Requirement {
    /// NewRequirement: validates the key, the operator's arity and every value.
    pub fn new(key: &str, op: Op, values: Vec<String>) -> Result<Requirement, String> {
        let errs = validation::qualified_name(key);
        if !errs.is_empty() {
            return Err(format!("key: Invalid value: {key:?}: {}", errs.join("; ")));
        }
        let mut values = values;
        values.sort();
        values.dedup();
        match op {
            Op::In | Op::NotIn if values.is_empty() => {
                return Err("values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty".into())
            }
            Op::Equals | Op::DoubleEquals | Op::NotEquals if values.len() != 1 => {
                return Err(format!(
                    "values: Invalid value: {values:?}: exact-match compatibility requires one single value"
                ))
            }
            Op::Exists | Op::DoesNotExist if !values.is_empty() => {
                return Err(format!(
                    "values: Invalid value: {values:?}: values set must be empty for exists and does not exist"
                ))
            }
            Op::GreaterThan | Op::LessThan => {
                if values.len() != 1 {
                    return Err(format!(
                        "values: Invalid value: {values:?}: for 'Gt', 'Lt' operators, exactly one value is required"
                    ));
                }
                if parse_i64(&values[0]).is_none() {
                    return Err(format!(
                        "values[0]: Invalid value: {:?}: for 'Gt', 'Lt' operators, the value must be an integer",
                        values[0]
                    ));
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let errs = validation::label_value(v);
            if !errs.is_empty() {
                return Err(format!(
                    "values[{i}][{key}]: Invalid value: {v:?}: {}",
                    errs.join("; ")
                ));
            }
        }
        Ok(Requirement {
            key: key.to_string(),
            op,
            values,
        })
    }

    /// Whether the requirement holds for a label set whose value for `self.key` is `value`
    /// (`None` when the key is absent).
    #[inline]
    pub fn matches(&self, value: Option<&str>) -> bool {
        match self.op {
            Op::Equals | Op::DoubleEquals | Op::In => {
                value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Op::NotEquals | Op::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::GreaterThan | Op::LessThan => {
                let (Some(v), Some(r)) = (value.and_then(parse_i64), parse_i64(&self.values[0]))
                else {
                    return false;
                };
                if self.op == Op::GreaterThan {
                    v > r
                } else {
                    v < r
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Op::DoesNotExist => write!(f, "!{}", self.key),
            Op::Exists => write!(f, "{}", self.key),
            Op::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Op::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Op::Equals => write!(f, "{}={}", self.key, self.values[0]),
            Op::DoubleEquals => write!(f, "{}=={}", self.key, self.values[0]),
            Op::NotEquals => write!(f, "{}!={}", self.key, self.values[0]),
            Op::GreaterThan => write!(f, "{}>{}", self.key, self.values[0]),
            Op::LessThan => write!(f, "{}<{}", self.key, self.values[0]),
        }
    }
}

/// A label selector: all requirements must hold. `nothing` is the selector of a null
/// `LabelSelector`, which matches no object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
    pub nothing: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Ident,
    In,
    NotIn,
    Bang,
    NotEquals,
    Equals,
    DoubleEquals,
    Greater,
    Less,
    Open,
    Close,
    Comma,
    End,
    Error,
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

/// Upstream's isWhitespace: space, tab, CR, LF only.
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

impl<'a> Lexer<'a> {
    fn next(&mut self) -> (Tok, &'a str) {
        let b = self.s.as_bytes();
        while self.pos < b.len() && is_ws(b[self.pos]) {
            self.pos += 1;
        }
        let start = self.pos;
        if start >= b.len() {
            return (Tok::End, "");
        }
        let c = b[start];
        if is_special(c) {
            let next = b.get(start + 1).copied();
            let (tok, len) = match (c, next) {
                (b'!', Some(b'=')) => (Tok::NotEquals, 2),
                (b'=', Some(b'=')) => (Tok::DoubleEquals, 2),
                _ => match c {
                    b'!' => (Tok::Bang, 1),
                    b'=' => (Tok::Equals, 1),
                    b'(' => (Tok::Open, 1),
                    b')' => (Tok::Close, 1),
                    b',' => (Tok::Comma, 1),
                    b'>' => (Tok::Greater, 1),
                    b'<' => (Tok::Less, 1),
                    _ => (Tok::Error, 1),
                },
            };
            self.pos += len;
            return (tok, &self.s[start..self.pos]);
        }
        while self.pos < b.len() && !is_ws(b[self.pos]) && !is_special(b[self.pos]) {
            self.pos += 1;
        }
        let lit = &self.s[start..self.pos];
        let tok = match lit {
            "in" => Tok::In,
            "notin" => Tok::NotIn,
            _ => Tok::Ident,
        };
        (tok, lit)
    }
}

/// Upstream's parser over a pre-scanned token list. In the "values" context the keywords `in`
/// and `notin` are plain identifiers.
struct Parser<'a> {
    toks: Vec<(Tok, &'a str)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self, values: bool) -> (Tok, &'a str) {
        let (t, l) = self.toks[self.pos.min(self.toks.len() - 1)];
        if values && matches!(t, Tok::In | Tok::NotIn) {
            (Tok::Ident, l)
        } else {
            (t, l)
        }
    }
    fn take(&mut self, values: bool) -> (Tok, &'a str) {
        let r = self.peek(values);
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        r
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (t, lit) = self.peek(true);
            match t {
                Tok::Ident | Tok::Bang => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    let (t, lit) = self.take(true);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.peek(true);
                            if t2 != Tok::Ident && t2 != Tok::Bang {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => {
                            return Err(format!("found '{lit}', expected: ',' or 'end of string'"))
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut op = None;
        let (mut t, mut key) = self.take(true);
        if t == Tok::Bang {
            op = Some(Op::DoesNotExist);
            (t, key) = self.take(true);
        }
        if t != Tok::Ident {
            return Err(format!("found '{key}', expected: identifier"));
        }
        let errs = validation::qualified_name(key);
        if !errs.is_empty() {
            return Err(format!("key: Invalid value: {key:?}: {}", errs.join("; ")));
        }
        let (next, _) = self.peek(true);
        if next == Tok::End || next == Tok::Comma {
            return Requirement::new(key, op.unwrap_or(Op::Exists), Vec::new());
        }
        if op == Some(Op::DoesNotExist) {
            return Requirement::new(key, Op::DoesNotExist, Vec::new());
        }
        let (t, lit) = self.take(false);
        let op = match t {
            Tok::In => Op::In,
            Tok::NotIn => Op::NotIn,
            Tok::Equals => Op::Equals,
            Tok::DoubleEquals => Op::DoubleEquals,
            Tok::NotEquals => Op::NotEquals,
            Tok::Greater => Op::GreaterThan,
            Tok::Less => Op::LessThan,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        };
        let values = match op {
            Op::In | Op::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        Requirement::new(key, op, values)
    }

    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let (t, lit) = self.take(true);
        if t != Tok::Open {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (t, lit) = self.peek(true);
        match t {
            Tok::Ident | Tok::Comma => {
                let vals = self.identifier_list()?;
                let (t, lit) = self.take(true);
                if t != Tok::Close {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(vals)
            }
            Tok::Close => {
                self.take(true);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifier_list(&mut self) -> Result<Vec<String>, String> {
        let mut vals: Vec<String> = Vec::new();
        loop {
            let (t, lit) = self.take(true);
            match t {
                Tok::Ident => {
                    vals.push(lit.to_string());
                    let (t2, l2) = self.peek(true);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::Close => return Ok(vals),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if vals.is_empty() {
                        vals.push(String::new());
                    }
                    let (t2, _) = self.peek(true);
                    if t2 == Tok::Close {
                        vals.push(String::new());
                        return Ok(vals);
                    }
                    if t2 == Tok::Comma {
                        self.take(true);
                        vals.push(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        let (t, _) = self.peek(true);
        if t == Tok::End || t == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (t, lit) = self.take(true);
        if t == Tok::Ident {
            Ok(vec![lit.to_string()])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

impl Selector {
    /// The selector that matches everything (an empty `LabelSelector`, or `""`).
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// The selector that matches nothing (a null `LabelSelector`).
    pub fn nothing() -> Selector {
        Selector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    fn sorted(mut requirements: Vec<Requirement>) -> Selector {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector {
            requirements,
            nothing: false,
        }
    }

    /// Parse the string form, e.g. `app=web,tier in (a,b),!canary`.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut lx = Lexer { s, pos: 0 };
        let mut toks = Vec::new();
        loop {
            let t = lx.next();
            toks.push(t);
            if t.0 == Tok::End {
                break;
            }
        }
        let mut p = Parser { toks, pos: 0 };
        Ok(Selector::sorted(p.parse()?))
    }

    /// LabelSelectorAsSelector: `matchLabels` pairs and `matchExpressions` triples
    /// (key, operator name `In|NotIn|Exists|DoesNotExist`, values).
    pub fn from_structured(
        match_labels: &[(String, String)],
        match_expressions: &[(String, String, Vec<String>)],
    ) -> Result<Selector, String> {
        let mut reqs = Vec::with_capacity(match_labels.len() + match_expressions.len());
        for (k, v) in match_labels {
            reqs.push(Requirement::new(k, Op::Equals, vec![v.clone()])?);
        }
        for (k, op, vals) in match_expressions {
            let op = match op.as_str() {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            reqs.push(Requirement::new(k, op, vals.clone())?);
        }
        Ok(Selector::sorted(reqs))
    }

    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Match against a label set given as a lookup function.
    #[inline]
    pub fn matches_with<'v, F: FnMut(&str) -> Option<&'v str>>(&self, mut get: F) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(get(&r.key)))
    }

    /// Match against a label set given as (key, value) pairs.
    pub fn matches_pairs(&self, labels: &[(&str, &str)]) -> bool {
        self.matches_with(|k| labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(|r| r.to_string()).collect();
        write!(f, "{}", parts.join(","))
    }
}

/// String interner: one id per distinct string.
#[derive(Default, Debug, Clone)]
pub struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(s.to_string(), id);
        self.names.push(s.to_string());
        id
    }
    pub fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Many label sets in CSR form: set `i` is `pairs[offsets[i]..offsets[i+1]]`, each pair
/// (key id, value id), sorted by key id. Keys and values share one interner.
#[derive(Default, Debug, Clone)]
pub struct LabelTable {
    pub interner: Interner,
    pub offsets: Vec<u32>,
    pub pairs: Vec<(u32, u32)>,
}

impl LabelTable {
    pub fn new() -> LabelTable {
        LabelTable {
            interner: Interner::default(),
            offsets: vec![0],
            pairs: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append one label set.
    pub fn push<'s, I: IntoIterator<Item = (&'s str, &'s str)>>(&mut self, labels: I) {
        let start = self.pairs.len();
        for (k, v) in labels {
            let k = self.interner.intern(k);
            let v = self.interner.intern(v);
            self.pairs.push((k, v));
        }
        self.pairs[start..].sort_unstable();
        self.offsets.push(self.pairs.len() as u32);
    }

    pub fn set(&self, i: usize) -> &[(u32, u32)] {
        &self.pairs[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Resolve a selector against this table's interner.
    pub fn compile(&self, sel: &Selector) -> CompiledSelector {
        let reqs = sel
            .requirements
            .iter()
            .map(|r| CompiledReq {
                key: self.interner.get(&r.key),
                values: r
                    .values
                    .iter()
                    .filter_map(|v| self.interner.get(v))
                    .collect(),
                req: r.clone(),
            })
            .collect();
        CompiledSelector {
            reqs,
            nothing: sel.nothing,
        }
    }

    /// Match one selector against every set; `out[i]` is set `i`'s result.
    pub fn match_all(&self, sel: &Selector, out: &mut [bool]) {
        let c = self.compile(sel);
        for (i, o) in out.iter_mut().enumerate().take(self.len()) {
            *o = c.matches(self, self.set(i));
        }
    }
}

struct CompiledReq {
    key: Option<u32>,
    values: Vec<u32>,
    req: Requirement,
}

/// A selector resolved to a [`LabelTable`]'s ids.
pub struct CompiledSelector {
    reqs: Vec<CompiledReq>,
    nothing: bool,
}

impl CompiledSelector {
    #[inline]
    pub fn matches(&self, table: &LabelTable, set: &[(u32, u32)]) -> bool {
        if self.nothing {
            return false;
        }
        for r in &self.reqs {
            let val = r
                .key
                .and_then(|k| set.iter().find(|p| p.0 == k).map(|p| p.1));
            let ok = match r.req.op {
                Op::Equals | Op::DoubleEquals | Op::In => {
                    val.is_some_and(|v| r.values.contains(&v))
                }
                Op::NotEquals | Op::NotIn => val.is_none_or(|v| !r.values.contains(&v)),
                Op::Exists => val.is_some(),
                Op::DoesNotExist => val.is_none(),
                Op::GreaterThan | Op::LessThan => {
                    r.req.matches(val.map(|v| table.interner.name(v)))
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// One field selector requirement: `field op value`, op one of `=`, `==`, `!=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub negate: bool,
    pub value: String,
}

/// Parse a field selector (fields.ParseSelector): comma-separated `f=v`, `f==v`, `f!=v`;
/// `\` escapes `,`, `=`, `!` and `\` in values.
pub fn parse_field_selector(s: &str) -> Result<Vec<FieldRequirement>, String> {
    let mut out = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    // split on unescaped commas
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            cur.push('\\');
            cur.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == ',' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if esc {
        cur.push('\\');
    }
    parts.push(cur);
    for part in parts {
        if part.is_empty() {
            continue;
        }
        let (field, negate, raw) = if let Some(i) = part.find("!=") {
            (&part[..i], true, &part[i + 2..])
        } else if let Some(i) = part.find("==") {
            (&part[..i], false, &part[i + 2..])
        } else if let Some(i) = part.find('=') {
            (&part[..i], false, &part[i + 1..])
        } else {
            return Err(format!(
                "invalid selector: '{s}'; can't understand '{part}'"
            ));
        };
        let mut value = String::new();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some(n @ ('\\' | ',' | '=' | '!')) => value.push(n),
                    Some(n) => {
                        return Err(format!(
                            "invalid field selector: invalid escape sequence: \\{n}"
                        ))
                    }
                    None => {
                        return Err("invalid field selector: unterminated escape sequence".into())
                    }
                }
            } else if c == ',' || c == '=' || c == '!' {
                return Err(format!(
                    "invalid field selector: unescaped {c} in value: {raw}"
                ));
            } else {
                value.push(c);
            }
        }
        out.push(FieldRequirement {
            field: field.trim().to_string(),
            negate,
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(sel: &str, labels: &[(&str, &str)]) -> bool {
        Selector::parse(sel).unwrap().matches_pairs(labels)
    }

    #[test]
    fn parse_and_print() {
        let s = Selector::parse("x=a,y in (c,b), !z, w notin (q), v").unwrap();
        assert_eq!(s.to_string(), "v,w notin (q),x=a,y in (b,c),!z");
        assert!(Selector::parse("").unwrap().is_everything());
        assert_eq!(Selector::parse("a==b").unwrap().to_string(), "a==b");
        assert_eq!(
            Selector::parse("a in (in)").unwrap().to_string(),
            "a in (in)"
        );
        assert_eq!(Selector::parse("a=").unwrap().to_string(), "a=");
    }

    #[test]
    fn matching() {
        let l = [("app", "web"), ("tier", "fe"), ("n", "5")];
        assert!(m("app=web", &l));
        assert!(m("app==web,tier", &l));
        assert!(!m("app!=web", &l));
        assert!(m("zone!=x", &l));
        assert!(m("tier in (fe,be)", &l));
        assert!(!m("tier notin (fe)", &l));
        assert!(m("zone notin (fe)", &l));
        assert!(m("!zone", &l));
        assert!(!m("!app", &l));
        assert!(m("n>4,n<6", &l));
        assert!(!m("app>4", &l));
        assert!(m("", &l));
        assert!(!Selector::nothing().matches_pairs(&l));
    }

    #[test]
    fn errors() {
        let e = |s: &str| Selector::parse(s).unwrap_err();
        assert_eq!(
            e("x in"),
            "unable to parse requirement: found '' expected: '('"
        );
        assert_eq!(e("x,"), "found '', expected: identifier after ','");
        assert_eq!(
            e("(x"),
            "found '(', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            e("x y"),
            "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert!(e("a b=c").contains("found 'b'"));
        assert!(e("a=b c").contains("found 'c', expected: ',' or 'end of string'"));
        assert!(e("-a=b").contains("key: Invalid value: \"-a\""));
        assert!(e("a=-b").contains("values[0][a]: Invalid value: \"-b\""));
        assert!(e("a>x").contains("must be an integer"));
        assert!(e("a in (b c)").contains("found 'c', expected: ',' or ')'"));
    }

    #[test]
    fn structured() {
        let s = Selector::from_structured(
            &[("app".into(), "web".into())],
            &[("tier".into(), "In".into(), vec!["a".into(), "b".into()])],
        )
        .unwrap();
        assert_eq!(s.to_string(), "app=web,tier in (a,b)");
        let e = Selector::from_structured(&[], &[("t".into(), "Foo".into(), vec![])]).unwrap_err();
        assert_eq!(e, "\"Foo\" is not a valid label selector operator");
        let e = Selector::from_structured(&[], &[("t".into(), "In".into(), vec![])]).unwrap_err();
        assert!(e.contains("values set can't be empty"));
    }

    #[test]
    fn table() {
        let mut t = LabelTable::new();
        t.push([("app", "web"), ("n", "7")]);
        t.push([("app", "db")]);
        t.push([]);
        let mut out = vec![false; 3];
        t.match_all(&Selector::parse("app in (web,x)").unwrap(), &mut out);
        assert_eq!(out, vec![true, false, false]);
        t.match_all(&Selector::parse("app!=web").unwrap(), &mut out);
        assert_eq!(out, vec![false, true, true]);
        t.match_all(&Selector::parse("n>6").unwrap(), &mut out);
        assert_eq!(out, vec![true, false, false]);
        t.match_all(&Selector::parse("zz notin (a)").unwrap(), &mut out);
        assert_eq!(out, vec![true, true, true]);
    }

    #[test]
    fn fields() {
        let f = parse_field_selector("spec.nodeName=n1,status.phase!=Running").unwrap();
        assert_eq!(f.len(), 2);
        assert!(f[1].negate);
        assert_eq!(f[0].value, "n1");
        assert_eq!(parse_field_selector("a==x\\,y").unwrap()[0].value, "x,y");
        assert!(parse_field_selector("abc").is_err());
        assert_eq!(parse_field_selector("metadata.name=").unwrap()[0].value, "");
    }
}
