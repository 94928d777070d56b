//! Tokenizer for the selector language (selectors.md §1).
//!
//! The lexer works on bytes and is driven by the parser one token at a time,
//! so the first error reported is always the left-most one. It has two
//! entry points because the language is context-sensitive:
//!
//! - [`Lexer::next_token`] lexes the general context (punctuation, strings,
//!   `has(…)`, `all()`, `global()`, label names);
//! - [`Lexer::operator`] is called by the parser straight after a label name
//!   and recognises only `==`, `!=` and the operator words.
//!
//! Hard cases:
//! - whitespace is only space and tab; any other byte outside a string
//!   (newline, CR, non-ASCII, `%`, `:` …) is an error;
//! - `has`, `all` and `global` are keywords only when *immediately*
//!   followed by `(`; otherwise they are ordinary label names;
//! - operator words are recognised only after a label and must end at a
//!   word boundary. Reading maximal runs of label bytes gives the boundary
//!   rule for free: `inf` is one run and is not `in`; `in{` is the run `in`;
//! - `starts with`, `ends with` and `not in` may be written with any amount
//!   of space/tab between the words, including none;
//! - string literals end at the next matching quote; there are no escapes.
//!
//! Every step advances over at least one byte or stops, and no byte is
//! examined more than a constant number of times, so lexing is linear.
//! Positions handed out are always on `char` boundaries: outside strings
//! the lexer only steps over ASCII bytes, and strings end on an ASCII quote.

use crate::error::ParseError;

/// Longest label name accepted, in bytes.
pub(crate) const MAX_LABEL_LEN: usize = 512;

/// A token of the general context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    /// `==` seen where an expression was expected.
    Equals,
    /// `!=` seen where an expression was expected.
    NotEquals,
    Not,
    And,
    Or,
    /// `has(label)`; the payload is the label name.
    Has(&'a str),
    /// `all()`.
    All,
    /// `global()`.
    Global,
    /// A label name.
    Label(&'a str),
    /// The contents of a string literal, without quotes.
    Str(&'a str),
    /// End of input.
    End,
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spanned<'a> {
    pub token: Token<'a>,
    pub pos: usize,
}

/// The operator that follows a label name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operator {
    Equals,
    NotEquals,
    Contains,
    StartsWith,
    EndsWith,
    In,
    NotIn,
}

/// True for the bytes that make up label names: `[A-Za-z0-9_./-]`.
pub(crate) fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// Checks that `name` is a label name the lexer would accept, returning the
/// reason when it is not.
pub(crate) fn check_label_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("label name is empty")
    } else if name.len() > MAX_LABEL_LEN {
        Err("label name is longer than 512 bytes")
    } else if !name.bytes().all(is_label_byte) {
        Err("label name may only contain [A-Za-z0-9_./-]")
    } else {
        Ok(())
    }
}

/// Streaming tokenizer over one selector string.
pub(crate) struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Lexer {
            src,
            bytes: src.as_bytes(),
            pos: 0,
        }
    }

    /// Lexes the next token of the general context.
    pub(crate) fn next_token(&mut self) -> Result<Spanned<'a>, ParseError> {
        self.skip_whitespace();
        let start = self.pos;
        let Some(&b) = self.bytes.get(start) else {
            return Ok(Spanned {
                token: Token::End,
                pos: start,
            });
        };
        let token = match b {
            b'(' => self.single(Token::LParen),
            b')' => self.single(Token::RParen),
            b'{' => self.single(Token::LBrace),
            b'}' => self.single(Token::RBrace),
            b',' => self.single(Token::Comma),
            b'!' if self.peek_at(start + 1) == Some(b'=') => self.double(Token::NotEquals),
            b'!' => self.single(Token::Not),
            b'=' if self.peek_at(start + 1) == Some(b'=') => self.double(Token::Equals),
            b'=' => return Err(ParseError::new(start, "expected \"==\"")),
            b'&' if self.peek_at(start + 1) == Some(b'&') => self.double(Token::And),
            b'&' => return Err(ParseError::new(start, "expected \"&&\"")),
            b'|' if self.peek_at(start + 1) == Some(b'|') => self.double(Token::Or),
            b'|' => return Err(ParseError::new(start, "expected \"||\"")),
            b'"' | b'\'' => Token::Str(self.string_body(b)?),
            b if is_label_byte(b) => self.word()?,
            _ => return Err(self.unexpected_character()),
        };
        Ok(Spanned { token, pos: start })
    }

    /// Lexes the operator that must follow a label name.
    pub(crate) fn operator(&mut self) -> Result<Operator, ParseError> {
        self.skip_whitespace();
        let start = self.pos;
        match (self.peek_at(start), self.peek_at(start + 1)) {
            (Some(b'='), Some(b'=')) => {
                self.pos += 2;
                return Ok(Operator::Equals);
            }
            (Some(b'='), _) => return Err(ParseError::new(start, "expected \"==\"")),
            (Some(b'!'), Some(b'=')) => {
                self.pos += 2;
                return Ok(Operator::NotEquals);
            }
            _ => {}
        }
        match self.run() {
            "contains" => Ok(Operator::Contains),
            "in" => Ok(Operator::In),
            "startswith" => Ok(Operator::StartsWith),
            "endswith" => Ok(Operator::EndsWith),
            "notin" => Ok(Operator::NotIn),
            "starts" => self.second_word("starts", "with", Operator::StartsWith),
            "ends" => self.second_word("ends", "with", Operator::EndsWith),
            "not" => self.second_word("not", "in", Operator::NotIn),
            _ => Err(ParseError::new(start, "expected operator after label")),
        }
    }

    /// Finishes a two-word operator such as `starts with` once `first` has
    /// been read: optional space/tab, then exactly `second` as a whole word.
    fn second_word(
        &mut self,
        first: &str,
        second: &str,
        operator: Operator,
    ) -> Result<Operator, ParseError> {
        self.skip_whitespace();
        let start = self.pos;
        if self.run() == second {
            Ok(operator)
        } else {
            Err(ParseError::new(
                start,
                format!("expected \"{second}\" after \"{first}\""),
            ))
        }
    }

    /// Lexes a run of label bytes in the general context: a keyword form
    /// (`has(…)`, `all()`, `global()`) or a label name.
    fn word(&mut self) -> Result<Token<'a>, ParseError> {
        let start = self.pos;
        let run = self.run();
        if self.peek_at(self.pos) == Some(b'(') {
            match run {
                "has" => {
                    self.pos += 1;
                    return self.has_body();
                }
                "all" => {
                    self.pos += 1;
                    self.close_empty_parens("all(")?;
                    return Ok(Token::All);
                }
                "global" => {
                    self.pos += 1;
                    self.close_empty_parens("global(")?;
                    return Ok(Token::Global);
                }
                _ => {}
            }
        }
        check_run_length(run, start)?;
        Ok(Token::Label(run))
    }

    /// The part of `has(` … `)` after the opening parenthesis.
    fn has_body(&mut self) -> Result<Token<'a>, ParseError> {
        self.skip_whitespace();
        let start = self.pos;
        let label = self.run();
        if label.is_empty() {
            return Err(ParseError::new(start, "expected label name inside has()"));
        }
        check_run_length(label, start)?;
        self.skip_whitespace();
        if self.peek_at(self.pos) == Some(b')') {
            self.pos += 1;
            Ok(Token::Has(label))
        } else {
            Err(ParseError::new(self.pos, "expected \")\" to close has("))
        }
    }

    /// The part of `all(` or `global(` after the opening parenthesis: only
    /// space/tab may come before the closing parenthesis.
    fn close_empty_parens(&mut self, opener: &str) -> Result<(), ParseError> {
        self.skip_whitespace();
        if self.peek_at(self.pos) == Some(b')') {
            self.pos += 1;
            Ok(())
        } else {
            Err(ParseError::new(
                self.pos,
                format!("expected \")\" after \"{opener}\""),
            ))
        }
    }

    /// A string literal opened by `quote` at the current position; returns
    /// the text between the quotes.
    fn string_body(&mut self, quote: u8) -> Result<&'a str, ParseError> {
        let open = self.pos;
        let body_start = open + 1;
        let rest = self.bytes.get(body_start..).unwrap_or_default();
        match rest.iter().position(|&b| b == quote) {
            Some(len) => {
                let close = body_start + len;
                self.pos = close + 1;
                // Both ends are next to ASCII quote bytes, so they are char
                // boundaries.
                Ok(&self.src[body_start..close])
            }
            None => Err(ParseError::new(open, "unterminated string starting")),
        }
    }

    /// Consumes the maximal run of label bytes at the current position.
    fn run(&mut self) -> &'a str {
        let start = self.pos;
        let len = self.bytes[start..]
            .iter()
            .take_while(|&&b| is_label_byte(b))
            .count();
        self.pos = start + len;
        // Label bytes are ASCII, so both ends are char boundaries.
        &self.src[start..self.pos]
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek_at(self.pos), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn peek_at(&self, index: usize) -> Option<u8> {
        self.bytes.get(index).copied()
    }

    fn single(&mut self, token: Token<'a>) -> Token<'a> {
        self.pos += 1;
        token
    }

    fn double(&mut self, token: Token<'a>) -> Token<'a> {
        self.pos += 2;
        token
    }

    /// The error for a byte that cannot start any token.
    fn unexpected_character(&self) -> ParseError {
        let shown = match self.src.get(self.pos..).and_then(|s| s.chars().next()) {
            Some(c) => format!("{:?}", c),
            None => format!("byte 0x{:02x}", self.bytes[self.pos]),
        };
        ParseError::new(self.pos, format!("unexpected character {shown}"))
    }
}

fn check_run_length(run: &str, start: usize) -> Result<(), ParseError> {
    if run.len() > MAX_LABEL_LEN {
        Err(ParseError::new(
            start,
            format!("label too long (max {MAX_LABEL_LEN} bytes)"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(src: &str) -> Result<Vec<Token<'_>>, ParseError> {
        let mut lexer = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let spanned = lexer.next_token()?;
            if spanned.token == Token::End {
                return Ok(out);
            }
            out.push(spanned.token);
        }
    }

    #[test]
    fn punctuation_and_keywords() {
        assert_eq!(
            tokens("( ) { } , == != ! && || has( a ) all( ) global()").unwrap(),
            vec![
                Token::LParen,
                Token::RParen,
                Token::LBrace,
                Token::RBrace,
                Token::Comma,
                Token::Equals,
                Token::NotEquals,
                Token::Not,
                Token::And,
                Token::Or,
                Token::Has("a"),
                Token::All,
                Token::Global,
            ]
        );
    }

    #[test]
    fn keywords_need_an_adjacent_paren() {
        assert_eq!(
            tokens("has all global").unwrap(),
            vec![
                Token::Label("has"),
                Token::Label("all"),
                Token::Label("global")
            ]
        );
    }

    #[test]
    fn strings_have_no_escapes() {
        assert_eq!(
            tokens(r#""a\"b"#).unwrap(),
            vec![Token::Str("a\\"), Token::Label("b")],
            "the backslash does not escape the quote after it"
        );
        assert_eq!(
            tokens(r#"x 'abc""#).unwrap_err().to_string(),
            "unterminated string starting at position 2"
        );
        assert_eq!(
            tokens(r#""a'b" 'x"y'"#).unwrap(),
            vec![Token::Str("a'b"), Token::Str("x\"y")]
        );
    }

    #[test]
    fn operator_words() {
        let op = |s: &str| Lexer::new(s).operator();
        assert_eq!(op("== ").unwrap(), Operator::Equals);
        assert_eq!(op("!=").unwrap(), Operator::NotEquals);
        assert_eq!(op(" contains\"x\"").unwrap(), Operator::Contains);
        assert_eq!(op("in{").unwrap(), Operator::In);
        assert_eq!(op("starts \t with").unwrap(), Operator::StartsWith);
        assert_eq!(op("startswith").unwrap(), Operator::StartsWith);
        assert_eq!(op("ends with").unwrap(), Operator::EndsWith);
        assert_eq!(op("endswith").unwrap(), Operator::EndsWith);
        assert_eq!(op("not in").unwrap(), Operator::NotIn);
        assert_eq!(op("notin").unwrap(), Operator::NotIn);
        for bad in ["inf", "starts withs", "IN", "=", "!", "", "not", "starts"] {
            assert!(op(bad).is_err(), "{bad:?} must not lex as an operator");
        }
    }

    #[test]
    fn label_length_limit() {
        let ok = "a".repeat(MAX_LABEL_LEN);
        assert_eq!(tokens(&ok).unwrap(), vec![Token::Label(&ok)]);
        let err = tokens(&"a".repeat(MAX_LABEL_LEN + 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "label too long (max 512 bytes) at position 0"
        );
    }

    #[test]
    fn unexpected_characters_are_named() {
        assert_eq!(
            tokens("a\n").unwrap_err().to_string(),
            "unexpected character '\\n' at position 1"
        );
        assert_eq!(
            tokens("é").unwrap_err().to_string(),
            "unexpected character 'é' at position 0"
        );
    }
}
