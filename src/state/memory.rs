//! The store in memory, on an injected clock that stands for the store's: for unit tests of the
//! rules above it, where time is moved by hand (and a store's clock set back, with
//! [`Memory::shift`]). Test builds only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::ledger::{Claim, RETAIN, Recorded, StoreTime, Swept, Use};
use super::{AuditEntry, StateError};
use crate::clock::Clock;

#[derive(Debug)]
pub(crate) struct Memory {
    records: Mutex<BTreeMap<String, Recorded>>,
    mark: Mutex<Option<i64>>,
    audit: Mutex<Vec<AuditEntry>>,
    clock: Arc<dyn Clock>,
    /// How far the store's clock reads from `clock`.
    shift: Mutex<chrono::Duration>,
    pub(super) mirror: Mutex<super::mirror::SqliteMirror>,
    spend: Mutex<super::spend::SqliteSpend>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Memory {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Memory {
        Memory {
            records: Mutex::default(),
            mark: Mutex::default(),
            audit: Mutex::default(),
            clock,
            shift: Mutex::new(chrono::Duration::zero()),
            mirror: Mutex::new(super::mirror::SqliteMirror::in_memory()),
            spend: Mutex::new(super::spend::SqliteSpend::in_memory()),
        }
    }

    /// Sets the store's clock `by` off the injected one (a clock set back or ahead).
    pub(crate) fn shift(&self, by: chrono::Duration) {
        *lock(&self.shift) = by;
    }

    pub(super) fn spend(&self) -> MutexGuard<'_, super::spend::SqliteSpend> {
        lock(&self.spend)
    }

    /// The spend ledger's step, as the state directory's (one lock for the lot here).
    pub(super) fn claim_within(
        &self,
        id: &str,
        first: &Use,
        reservation: &super::spend::Reservation,
        budgets: &[super::spend::Budget],
    ) -> Result<super::spend::Reserved, StateError> {
        let mut spend = lock(&self.spend);
        spend.claim_within(
            id,
            reservation,
            budgets,
            || Ok(self.now().timestamp_millis()),
            || {
                let at = self.now();
                Ok(match lock(&self.records).entry(id.to_owned()) {
                    std::collections::btree_map::Entry::Occupied(e) => Some(e.get().clone()),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(Recorded {
                            record: first.clone(),
                            at,
                        });
                        None
                    }
                })
            },
        )
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now() + *lock(&self.shift)
    }

    pub(super) async fn token(&self, id: &str) -> Result<Option<Recorded>, StateError> {
        Ok(lock(&self.records).get(id).cloned())
    }

    pub(super) async fn claim(&self, id: &str, first: &Use) -> Result<Claim, StateError> {
        let at = self.now();
        Ok(match lock(&self.records).entry(id.to_owned()) {
            std::collections::btree_map::Entry::Occupied(e) => Claim::Taken(e.get().clone()),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(Recorded {
                    record: first.clone(),
                    at,
                });
                Claim::Won
            }
        })
    }

    pub(super) async fn settle(&self, id: &str, record: &Use) -> Result<(), StateError> {
        let at = self.now();
        lock(&self.records).insert(
            id.to_owned(),
            Recorded {
                record: record.clone(),
                at,
            },
        );
        Ok(())
    }

    pub(super) async fn release(&self, id: &str) -> Result<(), StateError> {
        lock(&self.records).remove(id);
        Ok(())
    }

    pub(super) async fn recent(
        &self,
        content: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Recorded>, StateError> {
        let mut found: Vec<Recorded> = lock(&self.records)
            .values()
            .filter(|r| r.record.content == content && r.at >= since)
            .cloned()
            .collect();
        found.sort_by_key(|r| r.at);
        Ok(found)
    }

    pub(super) async fn time(&self) -> Result<StoreTime, StateError> {
        Ok(StoreTime {
            now: self.now(),
            swept_through: *lock(&self.mark),
        })
    }

    pub(super) async fn sweep(&self, at_most: usize) -> Result<Swept, StateError> {
        let now = self.now();
        let before =
            (now - chrono::Duration::from_std(RETAIN).unwrap_or_default()).timestamp_millis();
        let mut records = lock(&self.records);
        let doomed: Vec<(String, i64)> = records
            .iter()
            .filter(|(_, r)| r.record.expires < before)
            .map(|(id, r)| (id.clone(), r.record.expires))
            .take(at_most)
            .collect();
        let mut mark = lock(&self.mark);
        *mark = (*mark).max(doomed.iter().map(|(_, e)| *e).max());
        for (id, _) in &doomed {
            records.remove(id);
        }
        Ok(Swept {
            time: StoreTime {
                now,
                swept_through: *mark,
            },
            removed: doomed.len(),
        })
    }

    pub(super) async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StateError> {
        lock(&self.audit).push(entry.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::super::ledger::check_contract;
    use crate::clock::SystemClock;

    #[tokio::test]
    async fn the_memory_store_keeps_the_contract() {
        check_contract(&Store::memory(std::sync::Arc::new(SystemClock), [1; 32])).await;
        super::super::spend::check_spend_contract(&Store::memory(
            std::sync::Arc::new(SystemClock),
            [1; 32],
        ))
        .await;
    }
}
