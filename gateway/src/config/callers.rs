//! Who may call a virtual JID: `callers` lists, in `[calls]` (the default) and per endpoint.
//!
//! An entry is `"*"` (anyone on the federation), `"@local"` (users of the XMPP server the
//! gateway is attached to: the domains of `calls.local_domains`), a domain (`"example.org"`:
//! anyone there), a bare JID (`"alice@example.org"`: any of her devices) or a full JID (one
//! device).

use jid::{BareJid, FullJid, Jid};

/// `"*"`: anyone.
pub const ANYONE: &str = "*";
/// `"@local"`: users of the server's own domains.
pub const LOCAL: &str = "@local";

/// One entry of a `callers` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerPattern {
    /// `"*"`.
    Anyone,
    /// `"@local"`.
    Local,
    /// Anyone at this domain.
    Domain(String),
    /// Any device of this user.
    User(BareJid),
    /// This device.
    Device(FullJid),
}

impl CallerPattern {
    /// Reads an entry; the error says what is wrong in one line.
    pub fn parse(entry: &str) -> Result<Self, String> {
        match entry {
            ANYONE => return Ok(Self::Anyone),
            LOCAL => return Ok(Self::Local),
            _ => {}
        }
        let jid = Jid::new(entry).map_err(|e| {
            format!("`{entry}` is not \"{ANYONE}\", \"{LOCAL}\", a domain or a JID ({e})")
        })?;
        Ok(match jid.try_into_full() {
            Ok(full) => Self::Device(full),
            Err(bare) if bare.node().is_none() => Self::Domain(bare.domain().to_string()),
            Err(bare) => Self::User(bare),
        })
    }

    fn allows(&self, caller: &FullJid, local_domains: &[String]) -> bool {
        match self {
            Self::Anyone => true,
            Self::Local => local_domains.iter().any(|d| d == caller.domain().as_str()),
            Self::Domain(domain) => caller.domain().as_str() == domain,
            Self::User(user) => caller.to_bare() == *user,
            Self::Device(device) => caller == device,
        }
    }
}

/// A `callers` list, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerList(Vec<CallerPattern>);

impl CallerList {
    /// Reads every entry of `entries`; the errors name the entry's index.
    pub fn parse(entries: &[String]) -> Result<Self, Vec<(usize, String)>> {
        let mut patterns = Vec::new();
        let mut errors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match CallerPattern::parse(entry) {
                Ok(pattern) => patterns.push(pattern),
                Err(e) => errors.push((index, e)),
            }
        }
        match errors.is_empty() {
            true => Ok(Self(patterns)),
            false => Err(errors),
        }
    }

    /// Anyone may call.
    pub fn anyone() -> Self {
        Self(vec![CallerPattern::Anyone])
    }

    /// Whether `caller` may call, `local_domains` being what `"@local"` means.
    pub fn allows(&self, caller: &FullJid, local_domains: &[String]) -> bool {
        self.0.iter().any(|p| p.allows(caller, local_domains))
    }
}

/// The domains whose users count as local: `calls.local_domains`, or else the parent of the
/// component domain (`gw.example.org` -> `example.org`).
pub fn local_domains(configured: &[String], component_domain: Option<&str>) -> Vec<String> {
    if !configured.is_empty() {
        return configured.iter().map(|d| d.to_lowercase()).collect();
    }
    component_domain
        .and_then(|domain| domain.split_once('.'))
        .map(|(_, parent)| parent.to_lowercase())
        .filter(|parent| !parent.is_empty())
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(jid: &str) -> FullJid {
        FullJid::new(jid).unwrap()
    }

    fn list(entries: &[&str]) -> CallerList {
        CallerList::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn each_kind_of_entry_matches_what_it_says() {
        let local = ["example.org".to_string()];
        let alice_phone = full("alice@example.org/phone");
        let mallory = full("mallory@evil.example/x");
        assert!(list(&["*"]).allows(&mallory, &local));
        assert!(list(&["@local"]).allows(&alice_phone, &local));
        assert!(!list(&["@local"]).allows(&mallory, &local));
        assert!(list(&["evil.example"]).allows(&mallory, &local));
        assert!(!list(&["example.org"]).allows(&mallory, &local));
        assert!(list(&["Alice@Example.ORG"]).allows(&alice_phone, &local));
        assert!(!list(&["alice@example.org"]).allows(&full("alice@other.org/phone"), &local));
        assert!(list(&["alice@example.org/phone"]).allows(&alice_phone, &local));
        assert!(!list(&["alice@example.org/laptop"]).allows(&alice_phone, &local));
        // A subdomain is another domain.
        assert!(!list(&["example.org"]).allows(&full("bob@sub.example.org/x"), &local));
        assert!(!list(&[]).allows(&alice_phone, &local));
    }

    #[test]
    fn bad_entries_are_named_by_index() {
        let entries = [
            "*".to_string(),
            "not a jid@@".to_string(),
            "@lokal".to_string(),
        ];
        let errors = CallerList::parse(&entries).unwrap_err();
        assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
        assert!(errors[0].1.contains("not a jid@@"), "{}", errors[0].1);
    }

    #[test]
    fn local_domains_default_to_the_components_parent() {
        assert_eq!(local_domains(&[], Some("gw.example.org")), ["example.org"]);
        assert_eq!(local_domains(&[], Some("localhost")), Vec::<String>::new());
        assert_eq!(
            local_domains(&["A.org".into(), "b.org".into()], Some("gw.example.org")),
            ["a.org", "b.org"]
        );
    }
}
