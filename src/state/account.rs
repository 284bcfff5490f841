//! Which 1NCE account a store belongs to.
//!
//! Everything a store keeps is of one account: the order mirror answers `find_orders` as that
//! account's orders, the spend ledger counts that account's orders against its limits, the
//! used-token ledger and the audit trail are that account's. So a store records the account of
//! the first process that opens it, and refuses any other: a process of another account is
//! stopped at start-up, before it reads or writes anything, rather than mixing (say) simulated
//! orders into a live mirror or another account's orders into this one's answers.
//!
//! An account is the 1NCE API base URL and the OAuth client id, or the built-in sandbox, named
//! as such: its URL is a loopback port that changes every start. Neither is secret; the client
//! secret is never part of it. The state directory keeps it in the file `account` (JSON, see
//! [`Account::to_file`]), PostgreSQL in the table `store_account`; both read it back through
//! [`Account::from_fields`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// The account a process serves, or one a store records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// The built-in sandbox (`--sandbox`), whatever port it listens on this time.
    BuiltInSandbox,
    /// A 1NCE API (the real one, or a test double of it) at `api_url`, used with the OAuth
    /// client `client_id`.
    Api { api_url: String, client_id: String },
}

/// The `kind` of [`Account::BuiltInSandbox`], in the file and the table.
const SANDBOX: &str = "built_in_sandbox";
/// The `kind` of [`Account::Api`].
const API: &str = "api";
/// Longest value of a field that is read back; anything longer was not written by this server.
const LONGEST: usize = 2048;

/// The record as it is kept: the columns of `store_account`, the fields of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
}

impl Account {
    /// The account of client `client_id` at the API `base`. URLs that reach the same API are
    /// the same account: the one the client uses, without a trailing slash (the `url` crate has
    /// already lower-cased the host and dropped a default port).
    pub fn api(base: &url::Url, client_id: &str) -> Account {
        let url = base.as_str();
        let url = url.strip_suffix('/').unwrap_or(url);
        Account::Api {
            api_url: url.to_owned(),
            client_id: client_id.to_owned(),
        }
    }

    /// The record's `kind`, `api_url` and `client_id`, as kept.
    pub fn fields(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self {
            Account::BuiltInSandbox => (SANDBOX, None, None),
            Account::Api { api_url, client_id } => {
                (API, Some(api_url.as_str()), Some(client_id.as_str()))
            }
        }
    }

    /// Reads a record back from its fields. `Err` says what is wrong with it; a record this
    /// server did not write (edited by hand, or by a newer version) is never guessed at.
    pub fn from_fields(
        kind: &str,
        api_url: Option<&str>,
        client_id: Option<&str>,
    ) -> Result<Account, String> {
        let plain = |name: &str, value: &str| {
            if value.is_empty() {
                Err(format!("its {name} is empty"))
            } else if value.len() > LONGEST {
                Err(format!("its {name} is longer than {LONGEST} bytes"))
            } else if value.chars().any(char::is_control) {
                Err(format!("its {name} holds control characters"))
            } else {
                Ok(value.to_owned())
            }
        };
        match (kind, api_url, client_id) {
            (SANDBOX, None, None) => Ok(Account::BuiltInSandbox),
            (SANDBOX, _, _) => Err(format!(
                "kind {SANDBOX} has an api_url or a client_id, which only kind {API} has"
            )),
            (API, Some(url), Some(id)) => {
                let url = plain("api_url", url)?;
                let parsed =
                    url::Url::parse(&url).map_err(|e| format!("its api_url is not a URL ({e})"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err("its api_url is not an http(s) URL".to_owned());
                }
                Ok(Account::Api {
                    api_url: url,
                    client_id: plain("client_id", id)?,
                })
            }
            (API, _, _) => Err(format!("kind {API} needs both an api_url and a client_id")),
            (other, _, _) => Err(format!(
                "its kind {:?} is neither {SANDBOX} nor {API}",
                other.chars().take(64).collect::<String>()
            )),
        }
    }

    /// The state directory's file: one line of JSON.
    pub fn to_file(&self) -> Vec<u8> {
        let (kind, api_url, client_id) = self.fields();
        let fields = Fields {
            kind: kind.to_owned(),
            api_url: api_url.map(str::to_owned),
            client_id: client_id.map(str::to_owned),
        };
        let mut line = serde_json::to_vec(&fields).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Reads the state directory's file.
    pub fn from_file(bytes: &[u8]) -> Result<Account, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
        let fields: Fields = serde_json::from_str(text.trim())
            .map_err(|e| format!("it is not the JSON object this server writes ({e})"))?;
        Account::from_fields(
            &fields.kind,
            fields.api_url.as_deref(),
            fields.client_id.as_deref(),
        )
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::BuiltInSandbox => f.write_str("the built-in sandbox (--sandbox)"),
            Account::Api { api_url, client_id } => {
                write!(
                    f,
                    "the 1NCE account of client id {client_id:?} at {api_url}"
                )
            }
        }
    }
}

/// What opening a store found about its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    /// The store records this process's account.
    Same,
    /// A new store: it now records this process's account.
    New,
    /// A store an earlier version made, which recorded no account: it now records this
    /// process's.
    Adopted,
    /// The store belongs to another account; nothing was changed.
    Other(Account),
    /// The record cannot be read (the reason); nothing was changed.
    Unreadable(String),
}

impl Found {
    /// `Ok` for this process's own store, with what to tell the operator when an earlier
    /// version's store was adopted (said in a log line here, and by `check`); the refusal
    /// otherwise. `store` names it ("the state directory /x").
    pub(super) fn settle(
        self,
        store: &str,
        this: &Account,
    ) -> Result<Option<String>, super::StateError> {
        match self {
            Found::Same | Found::New => Ok(None),
            Found::Adopted => {
                let note = format!(
                    "{store} recorded no 1NCE account (an earlier version of 1nce-mcp made it, or its record was deleted): it now belongs to {this}, the first to open it since. If it holds another account's state, give that account a store of its own"
                );
                tracing::warn!("{note}");
                Ok(Some(note))
            }
            Found::Other(recorded) => Err(super::StateError::Refused(format!(
                "{store} belongs to {recorded}; this process is {this}. Its order mirror, spend ledger, used tokens and audit trail are that account's. Give each account its own --state-dir or database (--state-url); nothing was changed"
            ))),
            Found::Unreadable(why) => Err(super::StateError::Refused(format!(
                "{store} records the 1NCE account it belongs to, but the record cannot be read: {why}. Only this server writes it; restore it, or give this process its own --state-dir or database (--state-url); nothing was changed"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(url: &str, id: &str) -> Account {
        Account::api(&url.parse().unwrap(), id)
    }

    #[test]
    fn the_same_api_is_the_same_account_however_its_url_is_spelled() {
        let plain = api("https://api.1nce.com/management-api", "abc");
        assert_eq!(api("https://api.1nce.com/management-api/", "abc"), plain);
        assert_eq!(api("HTTPS://API.1nce.com:443/management-api", "abc"), plain);
        assert_eq!(
            plain,
            Account::Api {
                api_url: "https://api.1nce.com/management-api".into(),
                client_id: "abc".into()
            }
        );
        assert_ne!(api("https://api.1nce.com/management-api", "abd"), plain);
        assert_ne!(api("http://127.0.0.1:8080", "abc"), plain);
        assert_ne!(Account::BuiltInSandbox, plain);
    }

    #[test]
    fn records_read_back_as_written() {
        for account in [
            Account::BuiltInSandbox,
            api("https://api.1nce.com/management-api", "abc"),
            api("http://127.0.0.1:41234", "id with \"quotes\" and ü"),
        ] {
            let file = account.to_file();
            assert!(file.ends_with(b"}\n"), "{}", String::from_utf8_lossy(&file));
            assert_eq!(Account::from_file(&file), Ok(account.clone()));
            let (kind, url, id) = account.fields();
            assert_eq!(Account::from_fields(kind, url, id), Ok(account));
        }
        assert_eq!(
            Account::from_file(br#"{"kind":"built_in_sandbox"}"#),
            Ok(Account::BuiltInSandbox)
        );
        assert_eq!(
            Account::from_file(
                b" {\"kind\":\"api\",\"client_id\":\"x\",\"api_url\":\"https://a.example/m\"}\r\n"
            ),
            Ok(Account::Api {
                api_url: "https://a.example/m".into(),
                client_id: "x".into()
            })
        );
    }

    #[test]
    fn a_record_this_server_did_not_write_is_refused_saying_why() {
        let long = format!(
            "{{\"kind\":\"api\",\"api_url\":\"https://a/\",\"client_id\":\"{}\"}}",
            "x".repeat(3000)
        );
        for (bytes, why) in [
            (&b""[..], "not the JSON object"),
            (b"sandbox", "not the JSON object"),
            (b"\xff\xfe", "not UTF-8"),
            (b"[]", "not the JSON object"),
            (br#"{"kind":"sandbox"}"#, "neither built_in_sandbox nor api"),
            (
                br#"{"kind":"built_in_sandbox","client_id":"x"}"#,
                "only kind api",
            ),
            (br#"{"kind":"api","client_id":"x"}"#, "needs both"),
            (br#"{"kind":"api","api_url":"https://a/"}"#, "needs both"),
            (
                br#"{"kind":"api","api_url":"https://a/","client_id":""}"#,
                "client_id is empty",
            ),
            (
                br#"{"kind":"api","api_url":"https://a/","client_id":"a\nb"}"#,
                "control characters",
            ),
            (
                br#"{"kind":"api","api_url":"not a url","client_id":"x"}"#,
                "not a URL",
            ),
            (
                br#"{"kind":"api","api_url":"file:///etc","client_id":"x"}"#,
                "not an http(s) URL",
            ),
            (
                br#"{"kind":"api","api_url":"https://a/","client_id":"x","secret":"s"}"#,
                "unknown field",
            ),
            (long.as_bytes(), "longer than 2048 bytes"),
        ] {
            let err = Account::from_file(bytes).unwrap_err();
            assert!(
                err.contains(why),
                "{:?}: {err}",
                String::from_utf8_lossy(bytes)
            );
        }
        // The kind is quoted, and cut short, in the message.
        let err = Account::from_fields(&"k\n".repeat(100), None, None).unwrap_err();
        assert!(err.contains(r#""k\nk\n"#) && err.len() < 300, "{err}");
    }

    #[test]
    fn accounts_are_named_for_people_without_a_secret() {
        assert_eq!(
            Account::BuiltInSandbox.to_string(),
            "the built-in sandbox (--sandbox)"
        );
        assert_eq!(
            api("https://api.1nce.com/management-api/", "abc").to_string(),
            r#"the 1NCE account of client id "abc" at https://api.1nce.com/management-api"#
        );
    }

    #[test]
    fn a_store_of_another_account_is_refused_naming_both() {
        let this = Account::BuiltInSandbox;
        let theirs = api("https://api.1nce.com/management-api", "abc");
        let err = Found::Other(theirs)
            .settle("the state database postgres://u@db/once", &this)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(r#"the state database postgres://u@db/once belongs to the 1NCE account of client id "abc" at https://api.1nce.com/management-api; this process is the built-in sandbox (--sandbox)."#),
            "{err}"
        );
        assert!(err.ends_with("nothing was changed"), "{err}");
        assert!(matches!(
            Found::Unreadable("why".into()).settle("the state directory /s", &this),
            Err(super::super::StateError::Refused(m)) if m.contains("cannot be read: why")
        ));
        for fine in [Found::Same, Found::New] {
            assert_eq!(fine.settle("the state directory /s", &this), Ok(None));
        }
        let note = Found::Adopted
            .settle("the state directory /s", &this)
            .unwrap()
            .unwrap();
        assert!(
            note.starts_with("the state directory /s recorded no 1NCE account (an earlier version of 1nce-mcp made it, or its record was deleted): it now belongs to the built-in sandbox (--sandbox)"),
            "{note}"
        );
    }
}
