//! Menu entry keys: literal keys (`"1"`, `"42"`, `"*9"`) or Asterisk-style patterns starting
//! with `_`: `X` any of 0-9, `Z` 1-9, `N` 2-9, `[1-35]` a set, and at the end `.` (one or more
//! keys) or `!` (zero or more).

const KEYS: &str = "0123456789*#ABCD";

/// One position of a pattern: the keys it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct KeySet(u16);

impl KeySet {
    fn of(keys: &str) -> Self {
        Self(
            keys.chars()
                .filter_map(|k| KEYS.find(k))
                .fold(0, |m, i| m | (1 << i)),
        )
    }

    fn contains(&self, key: char) -> bool {
        KEYS.find(key).is_some_and(|i| self.0 & (1 << i) != 0)
    }

    fn breadth(&self) -> u32 {
        self.0.count_ones()
    }

    fn describe(&self) -> String {
        let keys: String = KEYS.chars().filter(|k| self.contains(*k)).collect();
        if keys.len() == 1 {
            keys
        } else {
            format!("[{keys}]")
        }
    }
}

/// How a run of keys relates to a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Matches as it is.
    Full,
    /// Does not match yet, but could with more keys.
    Prefix,
    /// Cannot match.
    No,
}

/// A parsed entry key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    positions: Vec<KeySet>,
    /// `.` (1) or `!` (0): more keys of any kind may follow, at least this many.
    tail: Option<usize>,
}

impl Pattern {
    /// Reads an entry key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(pattern) = text.strip_prefix('_') else {
            if text.is_empty() || !text.chars().all(|k| KEYS.contains(k)) {
                return Err(format!(
                    "`{text}` is not keys (0-9, *, #, A-D) or a pattern starting with _"
                ));
            }
            return Ok(Self {
                positions: text.chars().map(|k| KeySet::of(&k.to_string())).collect(),
                tail: None,
            });
        };
        let mut positions = Vec::new();
        let mut tail = None;
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if tail.is_some() {
                return Err(format!("`{text}`: `.` and `!` may only end a pattern"));
            }
            match c {
                'X' | 'x' => positions.push(KeySet::of("0123456789")),
                'Z' | 'z' => positions.push(KeySet::of("123456789")),
                'N' | 'n' => positions.push(KeySet::of("23456789")),
                '.' => tail = Some(1),
                '!' => tail = Some(0),
                '[' => {
                    let mut set = String::new();
                    let mut previous = None;
                    loop {
                        match chars.next() {
                            Some(']') => break,
                            Some('-') => match (previous, chars.next()) {
                                (Some(low), Some(high)) if low <= high && high != ']' => {
                                    set.extend((low..=high).filter(|k| KEYS.contains(*k)));
                                    previous = None;
                                }
                                _ => return Err(format!("`{text}`: bad range in [...]")),
                            },
                            Some(k) if KEYS.contains(k) => {
                                set.push(k);
                                previous = Some(k);
                            }
                            _ => return Err(format!("`{text}`: unclosed or bad [...]")),
                        }
                    }
                    if set.is_empty() {
                        return Err(format!("`{text}`: empty [...]"));
                    }
                    positions.push(KeySet::of(&set));
                }
                k if KEYS.contains(k) => positions.push(KeySet::of(&k.to_string())),
                other => {
                    return Err(format!(
                        "`{text}`: `{other}` is not a key or pattern letter"
                    ))
                }
            }
        }
        if positions.is_empty() && tail.is_none() {
            return Err(format!("`{text}` is an empty pattern"));
        }
        Ok(Self { positions, tail })
    }

    /// How `keys` relates to this pattern.
    pub fn matches(&self, keys: &str) -> Match {
        let keys: Vec<char> = keys.chars().collect();
        let fixed = self.positions.len();
        for (i, key) in keys.iter().enumerate().take(fixed) {
            if !self.positions[i].contains(*key) {
                return Match::No;
            }
        }
        if keys.len() < fixed {
            return Match::Prefix;
        }
        match self.tail {
            None if keys.len() == fixed => Match::Full,
            None => Match::No,
            Some(min) if keys.len() >= fixed + min => Match::Full,
            Some(_) => Match::Prefix,
        }
    }

    /// Whether keys that fully match could be extended and still match.
    pub fn open_ended(&self) -> bool {
        self.tail.is_some()
    }

    /// Fewest keys that can match.
    pub fn min_len(&self) -> usize {
        self.positions.len() + self.tail.unwrap_or(0)
    }

    /// Whether every match starts with `key`.
    pub fn starts_with_key(&self, key: char) -> bool {
        self.positions
            .first()
            .is_some_and(|set| set.breadth() == 1 && set.contains(key))
    }

    /// A canonical form: two entries with the same one accept the same keys.
    pub fn canonical(&self) -> String {
        let mut text: String = self.positions.iter().map(KeySet::describe).collect();
        match self.tail {
            Some(1) => text.push('.'),
            Some(_) => text.push('!'),
            None => {}
        }
        text
    }

    /// How broad the pattern is: of several full matches, the narrowest wins.
    pub fn breadth(&self) -> u32 {
        self.positions.iter().map(KeySet::breadth).sum::<u32>() + self.tail.map_or(0, |_| 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_keys_and_patterns_match() {
        let one = Pattern::parse("1").unwrap();
        assert_eq!(one.matches("1"), Match::Full);
        assert_eq!(one.matches("2"), Match::No);
        assert_eq!(one.matches(""), Match::Prefix);
        let ext = Pattern::parse("_1XX").unwrap();
        assert_eq!(ext.matches("12"), Match::Prefix);
        assert_eq!(ext.matches("123"), Match::Full);
        assert_eq!(ext.matches("1234"), Match::No);
        assert_eq!(ext.matches("223"), Match::No);
        let any = Pattern::parse("_X.").unwrap();
        assert_eq!(any.matches(""), Match::Prefix);
        assert_eq!(any.matches("5"), Match::Prefix);
        assert_eq!(any.matches("55"), Match::Full);
        assert_eq!(any.matches("5555555"), Match::Full);
        let set = Pattern::parse("_[1-3#]N").unwrap();
        assert_eq!(set.matches("#5"), Match::Full);
        assert_eq!(set.matches("41"), Match::No);
        assert_eq!(set.matches("21"), Match::No);
        assert_eq!(Pattern::parse("_9!").unwrap().matches("9"), Match::Full);
    }

    #[test]
    fn canonical_forms_find_duplicates() {
        assert_eq!(
            Pattern::parse("1").unwrap().canonical(),
            Pattern::parse("_1").unwrap().canonical()
        );
        assert_eq!(
            Pattern::parse("_X").unwrap().canonical(),
            Pattern::parse("_[0-9]").unwrap().canonical()
        );
        assert_ne!(
            Pattern::parse("_X").unwrap().canonical(),
            Pattern::parse("_Z").unwrap().canonical()
        );
        assert!(Pattern::parse("5").unwrap().breadth() < Pattern::parse("_X").unwrap().breadth());
    }

    #[test]
    fn bad_patterns_say_why() {
        for bad in ["", "1a", "_", "_[", "_[]", "_[3-1]", "_X.1", "_Q", "hello"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }
}
