//! Recursive-descent parser for the selector grammar (selectors.md §2).
//!
//! ```text
//! or_expr  := and_expr ( "||" and_expr )*
//! and_expr := unary ( "&&" unary )*
//! unary    := "!"* primary
//! primary  := has(…) | all() | global() | LABEL op STRING | LABEL [not] in SET
//!           | "(" or_expr ")"
//! ```
//!
//! Hard cases:
//! - recursion happens only through `(`, and parenthesis nesting is capped
//!   at [`MAX_NESTING`], so no input can overflow the stack; runs of `!`
//!   and long `&&`/`||` chains are handled with loops;
//! - `!` applies to one primary and is collapsed by parity, so `!!a` is `a`
//!   and `!(!a)` is `a` too (see [`Expr::negate`]);
//! - a one-operand group is its operand, so redundant parentheses vanish,
//!   while a parenthesised `&&` inside a `&&` stays a nested node;
//! - all input must be consumed, otherwise "unexpected content after
//!   selector".

use crate::error::ParseError;
use crate::expr::{CompareOp, Expr, ValueSet};
use crate::lexer::{Lexer, Operator, Spanned, Token};

/// Deepest parenthesis nesting accepted.
pub(crate) const MAX_NESTING: usize = 128;

/// Parses a whole selector. Empty or whitespace-only input is `all()`.
pub(crate) fn parse(src: &str) -> Result<Expr, ParseError> {
    let mut lexer = Lexer::new(src);
    let current = lexer.next_token()?;
    let mut parser = Parser {
        lexer,
        current,
        depth: 0,
    };
    if parser.current.token == Token::End {
        return Ok(Expr::All);
    }
    let expr = parser.or_expr()?;
    if parser.current.token != Token::End {
        return Err(ParseError::new(
            parser.current.pos,
            "unexpected content after selector",
        ));
    }
    Ok(expr)
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    /// The next unconsumed token of the general context.
    current: Spanned<'a>,
    /// Number of currently open parentheses.
    depth: usize,
}

impl<'a> Parser<'a> {
    /// Consumes `current` and lexes the token after it.
    fn advance(&mut self) -> Result<Spanned<'a>, ParseError> {
        let next = self.lexer.next_token()?;
        Ok(std::mem::replace(&mut self.current, next))
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut operands = vec![self.and_expr()?];
        while self.current.token == Token::Or {
            self.advance()?;
            operands.push(self.and_expr()?);
        }
        Ok(Expr::or(operands))
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut operands = vec![self.unary()?];
        while self.current.token == Token::And {
            self.advance()?;
            operands.push(self.unary()?);
        }
        Ok(Expr::and(operands))
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let mut negated = false;
        while self.current.token == Token::Not {
            negated = !negated;
            self.advance()?;
        }
        let primary = self.primary()?;
        Ok(if negated { primary.negate() } else { primary })
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let Spanned { token, pos } = self.current;
        let expr = match token {
            Token::LParen => return self.group(pos),
            Token::Has(key) => Expr::Has(key.into()),
            Token::All => Expr::All,
            Token::Global => Expr::Global,
            Token::Label(key) => self.label_expression(key)?,
            _ => return Err(ParseError::new(pos, "expected selector expression")),
        };
        self.advance()?;
        Ok(expr)
    }

    /// `(` or_expr `)`, with `current` on the opening parenthesis.
    fn group(&mut self, open: usize) -> Result<Expr, ParseError> {
        if self.depth == MAX_NESTING {
            return Err(ParseError::new(
                open,
                format!("selector nested too deeply (max {MAX_NESTING} levels)"),
            ));
        }
        self.depth += 1;
        self.advance()?;
        let inner = self.or_expr()?;
        if self.current.token != Token::RParen {
            return Err(ParseError::new(self.current.pos, "expected \")\""));
        }
        self.depth -= 1;
        self.advance()?;
        Ok(inner)
    }

    /// The rest of a comparison after the label `key`. Leaves `current` on
    /// the last token of the comparison (the string or the closing brace).
    fn label_expression(&mut self, key: &str) -> Result<Expr, ParseError> {
        let key: Box<str> = key.into();
        let op = match self.lexer.operator()? {
            Operator::Equals => CompareOp::Equals,
            Operator::NotEquals => CompareOp::NotEquals,
            Operator::Contains => CompareOp::Contains,
            Operator::StartsWith => CompareOp::StartsWith,
            Operator::EndsWith => CompareOp::EndsWith,
            Operator::In => return self.set(key, false),
            Operator::NotIn => return self.set(key, true),
        };
        self.advance()?;
        match self.current.token {
            Token::Str(value) => Ok(Expr::Compare {
                key,
                op,
                value: value.into(),
            }),
            _ => Err(ParseError::new(self.current.pos, "expected string literal")),
        }
    }

    /// A set literal after `in`/`not in`. Leaves `current` on `}`.
    fn set(&mut self, key: Box<str>, negated: bool) -> Result<Expr, ParseError> {
        self.advance()?;
        let open = self.current.pos;
        if self.current.token != Token::LBrace {
            return Err(ParseError::new(open, "expected \"{\" to start a set"));
        }
        let unterminated = || ParseError::new(open, "unterminated set starting");
        let mut values = Vec::new();
        loop {
            self.advance()?;
            match self.current.token {
                Token::RBrace => break,
                Token::Str(value) => values.push(Box::from(value)),
                Token::End => return Err(unterminated()),
                _ => {
                    return Err(ParseError::new(
                        self.current.pos,
                        "expected string literal or \"}\" in set",
                    ));
                }
            }
            self.advance()?;
            match self.current.token {
                Token::Comma => {}
                Token::RBrace => break,
                Token::End => return Err(unterminated()),
                _ => {
                    return Err(ParseError::new(
                        self.current.pos,
                        "expected \",\" or \"}\" in set",
                    ));
                }
            }
        }
        Ok(Expr::InSet {
            key,
            negated,
            set: ValueSet::new(values),
        })
    }
}
