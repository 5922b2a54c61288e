//! The text of rendered lines: random strings over the charset, sometimes
//! with word-like structure, or lines of a word file filtered to the
//! charset.

use crate::error::{Error, Result};
use crate::rng::Rng;
use std::collections::HashMap;
use std::path::Path;

/// What kind of symbol, for word-like strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Lower,
    Upper,
    Digit,
    Space,
    /// Letters without case (CJK and others) and multi-character symbols.
    Letter,
    Punct,
}

fn kind(symbol: &str) -> Kind {
    let mut chars = symbol.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else {
        return Kind::Letter;
    };
    if c == ' ' {
        Kind::Space
    } else if c.is_numeric() {
        Kind::Digit
    } else if c.is_lowercase() {
        Kind::Lower
    } else if c.is_uppercase() {
        Kind::Upper
    } else if c.is_alphabetic() {
        Kind::Letter
    } else {
        Kind::Punct
    }
}

/// The symbols of a charset, classified, and a longest-match lookup.
pub(crate) struct Symbols {
    symbols: Vec<String>,
    kinds: Vec<Kind>,
    lookup: HashMap<String, usize>,
    max_chars: usize,
}

impl Symbols {
    /// Classifies the symbols.
    pub fn new(symbols: &[String]) -> Symbols {
        Symbols {
            symbols: symbols.to_vec(),
            kinds: symbols.iter().map(|s| kind(s)).collect(),
            lookup: symbols
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i))
                .collect(),
            max_chars: symbols.iter().map(|s| s.chars().count()).max().unwrap_or(1),
        }
    }

    /// The symbol strings.
    pub fn list(&self) -> &[String] {
        &self.symbols
    }

    /// Whether symbol `i` is the space.
    pub fn is_space(&self, i: usize) -> bool {
        self.kinds[i] == Kind::Space
    }

    /// The text of a list of symbol indices.
    pub fn text(&self, ids: &[usize]) -> String {
        ids.iter().map(|&i| self.symbols[i].as_str()).collect()
    }

    /// A line filtered to the charset: longest-match symbols, a character
    /// that starts no symbol replaced by its lower- or upper-case form when
    /// that is a symbol and dropped otherwise; runs of white space become
    /// one space symbol (or nothing, without one), none at either end.
    pub fn filter(&self, line: &str) -> Vec<usize> {
        let chars: Vec<char> = line.chars().collect();
        let space = self.lookup.get(" ").copied();
        let mut out: Vec<usize> = Vec::new();
        let mut pending_space = false;
        let mut pos = 0;
        while pos < chars.len() {
            if chars[pos].is_whitespace() {
                pending_space = true;
                pos += 1;
                continue;
            }
            let mut found = None;
            for len in (1..=self.max_chars.min(chars.len() - pos)).rev() {
                let piece: String = chars[pos..pos + len].iter().collect();
                if let Some(&i) = self.lookup.get(&piece) {
                    found = Some((i, len));
                    break;
                }
            }
            if found.is_none() {
                let c = chars[pos];
                found = c
                    .to_lowercase()
                    .chain(c.to_uppercase())
                    .find_map(|alt| self.lookup.get(&alt.to_string()).copied())
                    .map(|i| (i, 1));
            }
            match found {
                Some((i, len)) => {
                    if pending_space && !out.is_empty() {
                        if let Some(s) = space {
                            out.push(s);
                        }
                    }
                    pending_space = false;
                    out.push(i);
                    pos += len;
                }
                None => pos += 1,
            }
        }
        out
    }

    /// A random line of `len` symbols drawn from `allowed` (indices of the
    /// symbols a typeface covers, at least one of them not a space): either
    /// uniform symbols, or word-like runs (lower-case, Capitalised or
    /// UPPER-case words with alternating vowels and consonants, numbers,
    /// codes mixing letters and digits) separated by spaces or punctuation
    /// where the charset has them. Never starts or ends with a space, never
    /// holds two spaces in a row.
    pub fn random(&self, allowed: &[usize], len: usize, rng: &mut Rng) -> Vec<usize> {
        let len = len.max(1);
        let of = |k: Kind| -> Vec<usize> {
            allowed
                .iter()
                .copied()
                .filter(|&i| self.kinds[i] == k)
                .collect()
        };
        let (lower, upper, digit) = (of(Kind::Lower), of(Kind::Upper), of(Kind::Digit));
        let (letter, punct, space) = (of(Kind::Letter), of(Kind::Punct), of(Kind::Space));
        let solid: Vec<usize> = allowed
            .iter()
            .copied()
            .filter(|&i| self.kinds[i] != Kind::Space)
            .collect();
        let pick = |v: &[usize], rng: &mut Rng| v[rng.below(v.len())];
        if solid.is_empty() {
            return Vec::new();
        }
        if rng.uniform() < 0.4 {
            return (0..len).map(|_| pick(&solid, rng)).collect();
        }
        let vowel = |i: usize| {
            matches!(
                self.symbols[i].to_lowercase().as_str(),
                "a" | "e" | "i" | "o" | "u" | "y"
            )
        };
        let letters: Vec<usize> = if lower.is_empty() {
            if upper.is_empty() {
                letter.clone()
            } else {
                upper.clone()
            }
        } else {
            lower.clone()
        };
        let (vowels, consonants): (Vec<usize>, Vec<usize>) =
            letters.iter().copied().partition(|&i| vowel(i));
        let mut out: Vec<usize> = Vec::with_capacity(len);
        while out.len() < len {
            let room = len - out.len();
            let run = (1 + rng.below(8)).min(room);
            let roll = rng.uniform();
            let mut word: Vec<usize> = Vec::with_capacity(run);
            if roll < 0.55 && !letters.is_empty() {
                // A word; syllable-like when there are vowels and consonants.
                let syllables = !vowels.is_empty() && !consonants.is_empty() && rng.uniform() < 0.7;
                let mut want_vowel = rng.uniform() < 0.4;
                for _ in 0..run {
                    let from = if syllables {
                        if want_vowel {
                            &vowels
                        } else {
                            &consonants
                        }
                    } else {
                        &letters
                    };
                    word.push(pick(from, rng));
                    want_vowel = if rng.uniform() < 0.8 {
                        !want_vowel
                    } else {
                        want_vowel
                    };
                }
                let case = rng.uniform();
                if !upper.is_empty() && !lower.is_empty() && case < 0.35 {
                    // Capitalised (0.25) or all capitals (0.1).
                    let all = case < 0.1;
                    for (j, s) in word.iter_mut().enumerate() {
                        if j == 0 || all {
                            let up = self.symbols[*s].to_uppercase();
                            if let Some(&u) = self.lookup.get(&up) {
                                if allowed.contains(&u) {
                                    *s = u;
                                }
                            }
                        }
                    }
                }
            } else if roll < 0.8 && !digit.is_empty() {
                // A number, sometimes with a decimal or thousands separator.
                for _ in 0..run {
                    word.push(pick(&digit, rng));
                }
                let seps: Vec<usize> = punct
                    .iter()
                    .copied()
                    .filter(|&i| matches!(self.symbols[i].as_str(), "." | "," | ":" | "/" | "-"))
                    .collect();
                if run >= 3 && !seps.is_empty() && rng.uniform() < 0.3 {
                    let at = 1 + rng.below(run - 2);
                    word[at] = pick(&seps, rng);
                }
            } else if roll < 0.92 || punct.is_empty() {
                // A code mixing letters and digits (or anything).
                for _ in 0..run {
                    word.push(pick(&solid, rng));
                }
            } else {
                word.push(pick(&punct, rng));
            }
            out.extend(word);
            if out.len() + 1 < len {
                let sep = rng.uniform();
                if !space.is_empty() && sep < 0.6 {
                    out.push(space[0]);
                } else if !punct.is_empty() && sep < 0.7 {
                    out.push(pick(&punct, rng));
                }
            }
        }
        out.truncate(len);
        while out.last().is_some_and(|&i| self.is_space(i)) {
            out.pop();
        }
        if out.is_empty() {
            out.push(pick(&solid, rng));
        }
        out
    }
}

/// The lines of a word file, each filtered to the charset (see
/// [`Symbols::filter`]); lines left empty are dropped. Errors name the file
/// when it cannot be read, is not UTF-8 or has no usable line.
pub(crate) fn read_words(path: &Path, symbols: &Symbols) -> Result<Vec<Vec<usize>>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Error::data(path, Some(line), "not valid UTF-8")
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let lines: Vec<Vec<usize>> = text
        .lines()
        .map(|l| symbols.filter(l))
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return Err(Error::data(
            path,
            None,
            "word file has no line with a symbol of the charset",
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alnum_upper_space() -> Symbols {
        let list: Vec<String> = ('0'..='9')
            .chain('a'..='z')
            .chain('A'..='Z')
            .chain([' ', '.', '-'])
            .map(String::from)
            .collect();
        Symbols::new(&list)
    }

    #[test]
    fn filter_keeps_charset_symbols() {
        let lower: Vec<String> = ('a'..='z').map(String::from).collect();
        let s = Symbols::new(&lower);
        assert_eq!(s.text(&s.filter("  Hello, Wörld!  ")), "hellowrld");
        let s = alnum_upper_space();
        assert_eq!(s.text(&s.filter("  Hello,   Wörld!  ")), "Hello Wrld");
    }

    #[test]
    fn random_lines_are_clean() {
        let s = alnum_upper_space();
        let all: Vec<usize> = (0..s.list().len()).collect();
        let mut rng = Rng::seed(5);
        for _ in 0..2000 {
            let len = 1 + rng.below(12);
            let line = s.random(&all, len, &mut rng);
            assert!(!line.is_empty() && line.len() <= len);
            let text = s.text(&line);
            assert_eq!(text.trim(), text);
            assert!(!text.contains("  "), "{text:?}");
        }
    }
}
