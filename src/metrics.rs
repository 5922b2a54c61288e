//! Recognition metrics: edit distance, exact match and character error rate.

/// The Levenshtein distance between `a` and `b`: the least number of
/// insertions, deletions and substitutions that turn one into the other.
/// O(|a|·|b|) time, O(min(|a|, |b|)) memory. For text, compare `char`s
/// (`s.chars().collect::<Vec<_>>()`) so that a multi-byte symbol counts once.
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    // Keep the shorter sequence along the row.
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let mut row: Vec<usize> = (0..=short.len()).collect();
    for (i, x) in long.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in short.iter().enumerate() {
            let substitute = diagonal + usize::from(x != y);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[short.len()]
}

/// Accumulated recognition results over a set of lines.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RecognitionMetrics {
    /// Number of lines.
    pub n: usize,
    /// Lines recognised exactly.
    pub exact: usize,
    /// Total edit distance, in characters, between predictions and labels.
    pub edits: usize,
    /// Total label length, in characters.
    pub label_chars: usize,
}

impl RecognitionMetrics {
    /// Adds one line: its prediction and its label (compared as `char`s).
    pub fn add(&mut self, predicted: &str, label: &str) {
        let p: Vec<char> = predicted.chars().collect();
        let l: Vec<char> = label.chars().collect();
        self.n += 1;
        self.exact += usize::from(p == l);
        self.edits += edit_distance(&p, &l);
        self.label_chars += l.len();
    }

    /// Adds the counts of `other` (for metrics accumulated in parts).
    pub fn merge(&mut self, other: &Self) {
        self.n += other.n;
        self.exact += other.exact;
        self.edits += other.edits;
        self.label_chars += other.label_chars;
    }

    /// The fraction of lines recognised exactly; 0 when there are none.
    pub fn exact_match(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.exact as f64 / self.n as f64
        }
    }

    /// The character error rate: total edit distance over total label length
    /// in characters. When the labels hold no characters at all it is the
    /// number of edits (0 when there are none), as if the length were 1.
    pub fn cer(&self) -> f64 {
        self.edits as f64 / self.label_chars.max(1) as f64
    }
}
