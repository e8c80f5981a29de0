//! What the command line asks of the store (`forwarden sessions list|revoke`): every stored
//! session's clear part, with the damaged records reported beside them, never fatal.

use super::{RedisStore, StoreError};
use crate::store::{Damaged, Meta};

impl RedisStore {
    /// Every stored session's clear part, and the records whose clear part is damaged.
    pub async fn list(&self) -> Result<(Vec<Meta>, Vec<Damaged>), StoreError> {
        let pattern = format!("{}s:*", self.prefix);
        let r = async {
            let mut c = self.conn().await?;
            let mut keys: Vec<String> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            let (mut out, mut damaged) = (Vec::new(), Vec::new());
            for key in keys {
                let Some(id) = key.strip_prefix(&format!("{}s:", self.prefix)) else {
                    continue;
                };
                // Read as text, each field parsed on its own: one damaged record is reported,
                // never the end of the listing.
                let v: Result<[Option<String>; 5], _> = redis::cmd("HMGET")
                    .arg(&key)
                    .arg(&["u", "e", "i", "x", "d"])
                    .query_async(&mut c)
                    .await;
                let v = match v {
                    Ok(v) => v,
                    // Not a hash at all.
                    Err(e) if e.kind() == redis::ErrorKind::TypeError || e.code() == Some("WRONGTYPE") => {
                        damaged.push(Damaged {
                            id: id.to_string(),
                            why: "not a session record",
                        });
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                match Meta::from_fields(id, v) {
                    Ok(m) => out.push(m),
                    Err(d) => damaged.push(d),
                }
            }
            Ok((out, damaged))
        }
        .await;
        let (mut out, damaged) = self.outcome(r).await?;
        out.sort_by(|a, b| (&a.subject, a.issued_at).cmp(&(&b.subject, b.issued_at)));
        Ok((out, damaged))
    }
}
