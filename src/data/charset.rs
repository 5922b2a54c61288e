//! The set of symbols a recogniser reads, and the mapping between text and
//! CTC classes (class 0 is the blank, symbol `i` is class `i + 1`).

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// An ordered list of distinct symbols (each one or more characters, such as
/// `a`, `7`, `中` or a space). Class 0 is the CTC blank; symbol `i` of the
/// list is class `i + 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charset {
    symbols: Vec<String>,
    lookup: HashMap<String, usize>,
    /// The longest symbol, in chars (for longest-match encoding).
    max_chars: usize,
}

impl Charset {
    /// The benchmark charset: digits then lower-case ASCII letters.
    pub const DEFAULT: &'static str = "0123456789abcdefghijklmnopqrstuvwxyz";

    /// The 36 symbols of [`Charset::DEFAULT`] (37 classes with the blank).
    pub fn default_alnum() -> Charset {
        let symbols = Self::DEFAULT.chars().map(String::from).collect();
        // The default list is distinct and non-empty by construction.
        Self::build(symbols)
    }

    fn build(symbols: Vec<String>) -> Charset {
        let lookup = symbols
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i + 1))
            .collect();
        let max_chars = symbols.iter().map(|s| s.chars().count()).max().unwrap_or(0);
        Charset {
            symbols,
            lookup,
            max_chars,
        }
    }

    /// A charset from a list of symbols, in class order. Errors on an empty
    /// list, an empty symbol or a symbol listed twice.
    pub fn from_symbols(symbols: Vec<String>) -> Result<Charset> {
        if symbols.is_empty() {
            return Err(Error::invalid(
                "Charset::from_symbols",
                "the list of symbols is empty",
            ));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, s) in symbols.iter().enumerate() {
            if s.is_empty() {
                return Err(Error::invalid(
                    "Charset::from_symbols",
                    format!("symbol {} is empty", i + 1),
                ));
            }
            if let Some(first) = seen.insert(s, i) {
                return Err(Error::invalid(
                    "Charset::from_symbols",
                    format!(
                        "symbol {:?} is listed twice (symbols {} and {})",
                        s,
                        first + 1,
                        i + 1
                    ),
                ));
            }
        }
        Ok(Self::build(symbols))
    }

    /// Reads a charset file: UTF-8, one symbol per line, in class order
    /// (class 1 is the first line). Multi-byte symbols (CJK, accented
    /// letters) are fine; CRLF line endings and a UTF-8 byte-order mark are
    /// accepted; empty lines are skipped. Lines are taken literally, so a
    /// line holding a single space is the space symbol. Errors name the file
    /// and, where it applies, the line.
    pub fn from_file(path: &Path) -> Result<Charset> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            Error::data(path, Some(line), "not valid UTF-8")
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut symbols = Vec::new();
        let mut lines_of: HashMap<&str, usize> = HashMap::new();
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            if let Some(first) = lines_of.insert(line, i + 1) {
                return Err(Error::data(
                    path,
                    Some(i + 1),
                    format!("symbol {line:?} already listed on line {first}"),
                ));
            }
            symbols.push(line.to_string());
        }
        if symbols.is_empty() {
            return Err(Error::data(path, None, "charset file lists no symbols"));
        }
        Ok(Self::build(symbols))
    }

    /// The symbols, in class order (class `i + 1` is `symbols()[i]`).
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// Number of output classes: the symbols plus the CTC blank (class 0).
    pub fn num_classes(&self) -> usize {
        self.symbols.len() + 1
    }

    /// Text to classes (each in `1..=symbols().len()`), matching the longest
    /// symbol at each position. The error names the first character that
    /// starts no symbol and its 1-based character position.
    pub fn encode(&self, text: &str) -> std::result::Result<Vec<usize>, String> {
        // Byte offsets of every char boundary, so that substrings of n chars
        // are cheap to take.
        let bounds: Vec<usize> = text
            .char_indices()
            .map(|(b, _)| b)
            .chain(std::iter::once(text.len()))
            .collect();
        let n_chars = bounds.len() - 1;
        let mut classes = Vec::with_capacity(n_chars);
        let mut pos = 0;
        'outer: while pos < n_chars {
            let longest = self.max_chars.min(n_chars - pos);
            for len in (1..=longest).rev() {
                let piece = &text[bounds[pos]..bounds[pos + len]];
                if let Some(&class) = self.lookup.get(piece) {
                    classes.push(class);
                    pos += len;
                    continue 'outer;
                }
            }
            let ch = text[bounds[pos]..].chars().next().unwrap_or('\u{fffd}');
            return Err(format!(
                "symbol {:?} (U+{:04X}) at character {} is not in the charset",
                ch.to_string(),
                ch as u32,
                pos + 1
            ));
        }
        Ok(classes)
    }

    /// Classes to text: each class `c` in `1..=symbols().len()` becomes its
    /// symbol; the blank (0) and classes out of range are skipped. No CTC
    /// collapsing of repeats is done here (that is the decoder's job).
    pub fn decode(&self, classes: &[usize]) -> String {
        let mut out = String::new();
        for &c in classes {
            if c >= 1 && c <= self.symbols.len() {
                out.push_str(&self.symbols[c - 1]);
            }
        }
        out
    }
}

impl Default for Charset {
    /// The benchmark charset, [`Charset::default_alnum`].
    fn default() -> Charset {
        Charset::default_alnum()
    }
}
