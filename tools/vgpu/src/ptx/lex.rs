//! Tokeniser for PTX text.

/// A token.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// An identifier, directive, opcode (with its dotted modifiers) or register
    /// (`ld.global.f32`, `%r1`, `%tid.x`, `.reg`, `$L__BB0_2`).
    Ident(String),
    /// An integer literal (as its 64-bit pattern).
    Int(u64),
    /// A float literal given in hex: bits and whether it is a double (`0d`).
    FloatBits(u64, bool),
    /// A decimal float literal.
    Float(f64),
    /// A string literal.
    Str(String),
    /// Punctuation: `; , : { } [ ] ( ) < > + - | ! @ =`.
    Punct(char),
}

/// A token and the line it is on.
#[derive(Clone, Debug)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// 1-based line.
    pub line: u32,
}

fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || matches!(c, '_' | '$' | '%' | '.')
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '.')
}

/// Parses a numeric literal (`0f3F800000`, `0d...`, `0x1F`, `42`, `42U`, `1.5e3`).
fn number(text: &str) -> Result<Tok, String> {
    let t = text.trim_end_matches(['U', 'u']);
    let bad = || format!("bad number literal {text:?}");
    if let Some(h) = t.strip_prefix("0f").or_else(|| t.strip_prefix("0F")) {
        return u32::from_str_radix(h, 16)
            .map(|b| Tok::FloatBits(b as u64, false))
            .map_err(|_| bad());
    }
    if let Some(h) = t.strip_prefix("0d").or_else(|| t.strip_prefix("0D")) {
        return u64::from_str_radix(h, 16)
            .map(|b| Tok::FloatBits(b, true))
            .map_err(|_| bad());
    }
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).map(Tok::Int).map_err(|_| bad());
    }
    if let Some(b) = t.strip_prefix("0b").or_else(|| t.strip_prefix("0B")) {
        return u64::from_str_radix(b, 2).map(Tok::Int).map_err(|_| bad());
    }
    if t.contains(['.', 'e', 'E']) {
        return t.parse::<f64>().map(Tok::Float).map_err(|_| bad());
    }
    if t.len() > 1 && t.starts_with('0') {
        return u64::from_str_radix(&t[1..], 8)
            .map(Tok::Int)
            .map_err(|_| bad());
    }
    t.parse::<u64>().map(Tok::Int).map_err(|_| bad())
}

/// Splits PTX text into tokens, dropping comments.
pub fn lex(src: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0usize, 1u32);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            let s: String = chars[start..i.min(chars.len())].iter().collect();
            out.push(Token {
                tok: Tok::Str(s),
                line,
            });
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+')
                        && matches!(chars[i - 1], 'e' | 'E')
                        && !chars[start..i]
                            .iter()
                            .any(|c| matches!(c, 'x' | 'X' | 'f' | 'd'))))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let tok = number(&text).map_err(|e| format!("line {line}: {e}"))?;
            out.push(Token { tok, line });
        } else if ident_start(c) {
            let start = i;
            i += 1;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                line,
            });
        } else if ";,:{}[]()<>+-|!@=".contains(c) {
            out.push(Token {
                tok: Tok::Punct(c),
                line,
            });
            i += 1;
        } else {
            return Err(format!("line {line}: unexpected character {c:?}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_an_instruction() {
        let t =
            lex("@!%p1 ld.global.nc.f32 %f1, [%rd2+-4]; // c\n mov.f32 %f2, 0f3F800000;").unwrap();
        let toks: Vec<Tok> = t.into_iter().map(|t| t.tok).collect();
        assert_eq!(toks[0], Tok::Punct('@'));
        assert_eq!(toks[1], Tok::Punct('!'));
        assert_eq!(toks[2], Tok::Ident("%p1".into()));
        assert_eq!(toks[3], Tok::Ident("ld.global.nc.f32".into()));
        assert!(toks.contains(&Tok::FloatBits(0x3F80_0000, false)));
        assert!(toks.contains(&Tok::Int(4)));
    }
}
