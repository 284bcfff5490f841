//! Which tools a server offers: all of them, the ones an operator named (`--tools`), and of
//! those only the ones that read (`--read-only`).
//!
//! "Reads only" is what each tool's own `readOnlyHint` annotation says, not a list kept here:
//! a new tool is left out of a read-only server unless it declares itself read-only.

use std::collections::BTreeSet;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::Tool;

use super::OrderServer;
use crate::oauth::Needed;

/// The tools one server offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolSet {
    /// The names of the tools offered; `None` for every tool (the default, decided without
    /// building a single schema, which start-up would pay for).
    offered: Option<BTreeSet<String>>,
    /// The tools `--tools` named, if it did.
    named: Option<BTreeSet<String>>,
    /// `--read-only` left out the tools that change something.
    read_only: bool,
}

impl ToolSet {
    /// Every tool.
    pub fn all() -> ToolSet {
        ToolSet::default()
    }

    /// The tools named in `only` (every tool when `None`), and of those only the read-only ones
    /// when `read_only`. Refuses a name that is no tool, and a set left empty.
    pub fn new(only: Option<&[String]>, read_only: bool) -> Result<ToolSet, String> {
        if only.is_none() && !read_only {
            return Ok(ToolSet::all());
        }
        let known = OrderServer::tool_definitions();
        let list = |tools: &mut dyn Iterator<Item = &Tool>| {
            tools
                .map(|t| t.name.as_ref())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let named = only.map(|given| {
            given
                .iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect()
        });
        let mut chosen: BTreeSet<String> = match only {
            None => known.iter().map(|t| t.name.to_string()).collect(),
            Some(given) => {
                let mut chosen = BTreeSet::new();
                for name in given.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
                    if !known.iter().any(|t| t.name == name) {
                        return Err(format!(
                            "--tools: no tool is called {name:?}; the tools are: {}",
                            list(&mut known.iter())
                        ));
                    }
                    chosen.insert(name.to_owned());
                }
                if chosen.is_empty() {
                    return Err(format!(
                        "--tools needs at least one tool name, from: {}",
                        list(&mut known.iter())
                    ));
                }
                chosen
            }
        };
        if read_only {
            chosen.retain(|name| known.iter().any(|t| t.name == *name && reads_only(t)));
        }
        if chosen.is_empty() {
            return Err(format!(
                "--tools names only tools that change something, and --read-only leaves those out: nothing would be offered. The read-only tools are: {}",
                list(&mut known.iter().filter(|t| reads_only(t)))
            ));
        }
        Ok(ToolSet {
            offered: Some(chosen),
            named,
            read_only,
        })
    }

    /// Why the tool called `name`, one of this server's, is not offered: the setting that
    /// turned it off. `None` when it is offered, or is no tool of this server.
    pub fn turned_off(&self, name: &str) -> Option<String> {
        if self.offers(name) {
            return None;
        }
        let tool = OrderServer::tool_definitions()
            .into_iter()
            .find(|t| t.name == name)?;
        let named = self.named.as_ref().is_none_or(|n| n.contains(name));
        Some(if self.read_only && named && !reads_only(&tool) {
            format!(
                "{name} is turned off by --read-only (or ONCE_READ_ONLY): this server only offers the tools that read"
            )
        } else {
            format!("{name} is turned off by --tools (or ONCE_TOOLS), which does not name it")
        })
    }

    /// Whether the tool called `name` is offered.
    pub fn offers(&self, name: &str) -> bool {
        self.offered.as_ref().is_none_or(|o| o.contains(name))
    }

    /// The offered tools as `tools/list` shows them, sorted by name.
    pub fn definitions(&self) -> Vec<Tool> {
        OrderServer::tool_definitions()
            .into_iter()
            .filter(|t| self.offers(&t.name))
            .collect()
    }

    /// The router of the offered tools.
    pub(super) fn router(&self) -> ToolRouter<OrderServer> {
        let mut router = OrderServer::router();
        if self.offered.is_some() {
            for tool in router.list_all() {
                if !self.offers(&tool.name) {
                    router.remove_route(&tool.name);
                }
            }
        }
        router
    }
}

/// Whether a tool declares that it only reads. A tool that says nothing does not.
/// The OAuth scope a tool needs: `orders:read` for one that only reads (its `readOnlyHint`),
/// `orders:write` for any other.
pub fn needed(tool: &Tool) -> Needed {
    if reads_only(tool) {
        Needed::Read
    } else {
        Needed::Write
    }
}

fn reads_only(tool: &Tool) -> bool {
    tool.annotations
        .as_ref()
        .and_then(|a| a.read_only_hint)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &ToolSet) -> Vec<String> {
        set.definitions()
            .iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    #[test]
    fn read_only_follows_the_annotations() {
        let read_only = ToolSet::new(None, true).unwrap();
        assert_eq!(
            names(&read_only),
            ["find_orders", "get_order", "list_orders", "list_products"]
        );
        assert!(!read_only.offers("create_order"));
        assert_eq!(names(&ToolSet::all()).len(), 5);
    }

    #[test]
    fn named_tools_are_checked_and_combined_with_read_only() {
        let given = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let two = ToolSet::new(Some(&given(&["get_order", " list_orders ", ""])), false).unwrap();
        assert_eq!(names(&two), ["get_order", "list_orders"]);
        let err = ToolSet::new(Some(&given(&["get_order", "delete_order"])), false).unwrap_err();
        assert!(
            err.contains("\"delete_order\"") && err.contains("create_order, find_orders"),
            "{err}"
        );
        let err = ToolSet::new(Some(&given(&["create_order"])), true).unwrap_err();
        assert!(err.contains("nothing would be offered"), "{err}");
        assert!(ToolSet::new(Some(&given(&[" "])), false).is_err());
        let mixed = ToolSet::new(Some(&given(&["create_order", "get_order"])), true).unwrap();
        assert_eq!(names(&mixed), ["get_order"]);
    }
}
