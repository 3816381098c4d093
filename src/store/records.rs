//! Call records: one per call that reached a workflow, with every offer made to an agent. The
//! usage and call-list reports are computed from them.
//!
//! Records are written by the [`super::RecordWriter`], off the routing path, and may be written
//! late (after a database outage) or twice (a retry after a lost acknowledgement): a record is
//! identified by its Call-ID and arrival time, and writing it again is a no-op.
//!
//! Names and URIs (workflow, queue, agent, group) are copied as text: a record is history and
//! outlives the things it mentions.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::error::{Entity, StoreError, on};
use super::{
    BeginWrite, Store, duration_from_ms, duration_to_ms, from_ms, from_ms_opt, on_pool, to_ms,
};
use crate::config::model::SipUri;

/// Most rows in one multi-row insert of [`Store::record_calls`]: 18 parameters a record keeps
/// a statement at 2,304 parameters, under SQLite's limit (32,766) and PostgreSQL's (65,535).
pub const BATCH_ROWS: usize = 128;

/// Most records in one page of [`Store::call_records_page`] (also its bind list of ids).
pub(crate) const PAGE_ROWS: usize = 1000;

/// Where a page of call records ends: the last record's arrival (ms) and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordCursor(i64, i64);

/// Database id of a call record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRecordId(pub i64);

/// How a call ended, as far as the reports care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// An agent answered.
    Answered,
    /// The caller hung up before an agent answered.
    Abandoned,
    /// The queue's time-out action moved the call on.
    QueueTimedOut,
    /// The queue's overflow action moved the call on.
    Overflowed,
    /// Outside business hours: the out-of-hours action applied.
    OutOfHours,
    /// On a holiday: the holiday action applied.
    Holiday,
    /// An IVR answer sent the call to a SIP address or voicemail.
    Forwarded,
    /// rgsd ended the call by an action (disconnect, too many wrong IVR answers).
    Disconnected,
    /// Refused before it was answered (inactive workflow, untrusted peer, too many calls);
    /// `sip_code` says which.
    Rejected,
    /// An internal error ended the call.
    Failed,
    /// A leg's RFC 4028 session timer ran out (the peer stopped refreshing, or rgsd's refresh
    /// failed): rgsd ended the call.
    SessionExpired,
    /// The call was in progress when rgsd stopped without ending it (a crash, `kill -9`, a
    /// power cut): recorded at the next start from the call journal (`store::journal`).
    Restarted,
}

impl CallOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Abandoned => "abandoned",
            Self::QueueTimedOut => "queue_timed_out",
            Self::Overflowed => "overflowed",
            Self::OutOfHours => "out_of_hours",
            Self::Holiday => "holiday",
            Self::Forwarded => "forwarded",
            Self::Disconnected => "disconnected",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::SessionExpired => "session_expired",
            Self::Restarted => "restarted",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "answered" => Self::Answered,
            "abandoned" => Self::Abandoned,
            "queue_timed_out" => Self::QueueTimedOut,
            "overflowed" => Self::Overflowed,
            "out_of_hours" => Self::OutOfHours,
            "holiday" => Self::Holiday,
            "forwarded" => Self::Forwarded,
            "disconnected" => Self::Disconnected,
            "rejected" => Self::Rejected,
            "failed" => Self::Failed,
            "session_expired" => Self::SessionExpired,
            "restarted" => Self::Restarted,
            _ => return Err(corrupt("call_record.outcome", s)),
        })
    }
}

/// How one offer to an agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OfferResult {
    Answered,
    /// The agent refused (a 4xx/5xx/6xx final response); `sip_code` says which.
    Declined,
    /// The alert time ran out.
    NoAnswer,
    /// Withdrawn: another agent answered, or the caller hung up.
    Cancelled,
    /// The agent could not be reached (transport error, timeout of the INVITE transaction).
    Failed,
}

impl OfferResult {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Declined => "declined",
            Self::NoAnswer => "no_answer",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "answered" => Self::Answered,
            "declined" => Self::Declined,
            "no_answer" => Self::NoAnswer,
            "cancelled" => Self::Cancelled,
            "failed" => Self::Failed,
            _ => return Err(corrupt("call_offer.result", s)),
        })
    }
}

/// One call, from arrival to end. Times are wall-clock UTC, stored at millisecond precision.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// The SIP Call-ID of the caller's leg.
    pub call_id: String,
    /// Workflow name.
    pub workflow: String,
    pub workflow_uri: SipUri,
    /// The caller's address as received (the From URI; not necessarily `sip:`).
    pub caller: String,
    pub arrived_at: DateTime<Utc>,
    pub welcome_ended_at: Option<DateTime<Utc>>,
    /// The last queue the call waited in.
    pub queue: Option<String>,
    pub queued_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    pub outcome: CallOutcome,
    /// The agent who answered.
    pub agent: Option<SipUri>,
    /// The group through which the call reached that agent.
    pub agent_group: Option<String>,
    /// Where a time-out, overflow or IVR action sent the call (a SIP URI or a queue name).
    pub transferred_to: Option<String>,
    /// The final SIP status of the caller's leg, when rgsd sent one.
    pub sip_code: Option<u16>,
    /// Time spent waiting in queues.
    pub wait: Option<Duration>,
    /// Time spent talking to the agent.
    pub talk: Option<Duration>,
    /// Every offer, in the order made.
    pub offers: Vec<CallOffer>,
    /// Announcements the caller heard while waiting (position and wait, periodic prompts).
    pub announcements: u32,
    /// The wrap-up the answering agent went into after the call (`docs/behaviour.md`,
    /// Wrap-up), as set; the agent may have ended it earlier.
    pub wrap_up: Option<Duration>,
}

/// One offer of a call to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOffer {
    pub agent: SipUri,
    pub agent_group: Option<String>,
    pub offered_at: DateTime<Utc>,
    pub result: OfferResult,
    /// The agent's final SIP status, when one came back.
    pub sip_code: Option<u16>,
}

fn corrupt(column: &'static str, value: &str) -> StoreError {
    StoreError::Corrupt {
        column,
        value: value.to_owned(),
    }
}

#[derive(FromRow)]
struct RecordRow {
    id: i64,
    call_id: String,
    workflow: String,
    workflow_uri: String,
    caller: String,
    arrived_at: i64,
    welcome_ended_at: Option<i64>,
    queue: Option<String>,
    queued_at: Option<i64>,
    answered_at: Option<i64>,
    ended_at: i64,
    outcome: String,
    agent: Option<String>,
    agent_group: Option<String>,
    transferred_to: Option<String>,
    sip_code: Option<i32>,
    wait_ms: Option<i64>,
    talk_ms: Option<i64>,
    announcements: i64,
    wrap_up_ms: Option<i64>,
}

#[derive(FromRow)]
struct OfferRow {
    call_record_id: i64,
    agent: String,
    agent_group: Option<String>,
    offered_at: i64,
    result: String,
    sip_code: Option<i32>,
}

fn sip_code_from(code: Option<i32>, column: &'static str) -> Result<Option<u16>, StoreError> {
    code.map(|c| u16::try_from(c).map_err(|_| corrupt(column, &c.to_string())))
        .transpose()
}

impl RecordRow {
    fn into_record(self, offers: Vec<CallOffer>) -> Result<CallRecord, StoreError> {
        Ok(CallRecord {
            arrived_at: from_ms(self.arrived_at, "call_record.arrived_at")?,
            welcome_ended_at: from_ms_opt(self.welcome_ended_at, "call_record.welcome_ended_at")?,
            queued_at: from_ms_opt(self.queued_at, "call_record.queued_at")?,
            answered_at: from_ms_opt(self.answered_at, "call_record.answered_at")?,
            ended_at: from_ms(self.ended_at, "call_record.ended_at")?,
            outcome: CallOutcome::parse(&self.outcome)?,
            sip_code: sip_code_from(self.sip_code, "call_record.sip_code")?,
            wait: self
                .wait_ms
                .map(|ms| duration_from_ms(ms, "call_record.wait_ms"))
                .transpose()?,
            talk: self
                .talk_ms
                .map(|ms| duration_from_ms(ms, "call_record.talk_ms"))
                .transpose()?,
            announcements: u32::try_from(self.announcements).map_err(|_| {
                corrupt("call_record.announcements", &self.announcements.to_string())
            })?,
            wrap_up: self
                .wrap_up_ms
                .map(|ms| duration_from_ms(ms, "call_record.wrap_up_ms"))
                .transpose()?,
            call_id: self.call_id,
            workflow: self.workflow,
            workflow_uri: SipUri(self.workflow_uri),
            caller: self.caller,
            queue: self.queue,
            agent: self.agent.map(SipUri),
            agent_group: self.agent_group,
            transferred_to: self.transferred_to,
            offers,
        })
    }
}

impl OfferRow {
    fn into_offer(self) -> Result<CallOffer, StoreError> {
        Ok(CallOffer {
            agent: SipUri(self.agent),
            agent_group: self.agent_group,
            offered_at: from_ms(self.offered_at, "call_offer.offered_at")?,
            result: OfferResult::parse(&self.result)?,
            sip_code: sip_code_from(self.sip_code, "call_offer.sip_code")?,
        })
    }
}

impl Store {
    /// Writes a call record and its offers in one transaction. Writing the same record again
    /// (same Call-ID and arrival time) changes nothing and returns the stored record's id.
    ///
    /// # Errors
    /// [`StoreError::Database`]; see [`StoreError::is_transient`] for which are worth retrying.
    pub async fn record_call(&self, record: &CallRecord) -> Result<CallRecordId, StoreError> {
        let now = self.now_ms();
        let r = record;
        on_pool!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            let inserted = sqlx::query_scalar::<_, i64>(
                "insert into call_record (call_id, workflow, workflow_uri, caller, arrived_at,
                                          welcome_ended_at, queue, queued_at, answered_at, ended_at,
                                          outcome, agent, agent_group, transferred_to, sip_code,
                                          wait_ms, talk_ms, created_at, announcements, wrap_up_ms)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                         $18, $19, $20)
                 on conflict (call_id, arrived_at) do nothing
                 returning id",
            )
            .bind(r.call_id.as_str())
            .bind(r.workflow.as_str())
            .bind(r.workflow_uri.as_str())
            .bind(r.caller.as_str())
            .bind(to_ms(r.arrived_at))
            .bind(r.welcome_ended_at.map(to_ms))
            .bind(r.queue.as_deref())
            .bind(r.queued_at.map(to_ms))
            .bind(r.answered_at.map(to_ms))
            .bind(to_ms(r.ended_at))
            .bind(r.outcome.as_str())
            .bind(r.agent.as_ref().map(SipUri::as_str))
            .bind(r.agent_group.as_deref())
            .bind(r.transferred_to.as_deref())
            .bind(r.sip_code.map(i32::from))
            .bind(r.wait.map(duration_to_ms))
            .bind(r.talk.map(duration_to_ms))
            .bind(now)
            .bind(i64::from(r.announcements))
            .bind(r.wrap_up.map(duration_to_ms))
            .fetch_optional(&mut *tx)
            .await
            .map_err(on(Entity::CallRecord))?;
            let Some(id) = inserted else {
                // Already stored (a retry): leave it, offers included, as it is.
                let id = sqlx::query_scalar::<_, i64>(
                    "select id from call_record where call_id = $1 and arrived_at = $2",
                )
                .bind(r.call_id.as_str())
                .bind(to_ms(r.arrived_at))
                .fetch_one(&mut *tx)
                .await
                .map_err(on(Entity::CallRecord))?;
                return Ok(CallRecordId(id));
            };
            for offer in &r.offers {
                sqlx::query(
                    "insert into call_offer (call_record_id, agent, agent_group, offered_at,
                                             result, sip_code)
                     values ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id)
                .bind(offer.agent.as_str())
                .bind(offer.agent_group.as_deref())
                .bind(to_ms(offer.offered_at))
                .bind(offer.result.as_str())
                .bind(offer.sip_code.map(i32::from))
                .execute(&mut *tx)
                .await
                .map_err(on(Entity::CallRecord))?;
            }
            tx.commit().await.map_err(StoreError::Database)?;
            Ok(CallRecordId(id))
        }.await)
    }

    /// Writes several call records, with their offers, in one transaction of a few multi-row
    /// statements (at most [`BATCH_ROWS`] rows each): the record writer's path, where one
    /// transaction per call would cost a round trip to the database per statement. Records
    /// already stored (same Call-ID and arrival time, also twice within `records`) are left as
    /// they are, as [`Store::record_call`] does. Either every record is written or none.
    ///
    /// # Errors
    /// [`StoreError::Database`]; see [`StoreError::is_transient`] for which are worth retrying.
    /// A permanent error does not say which record the database refused: write them one at a
    /// time to find it.
    pub async fn record_calls(&self, records: &[CallRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let now = self.now_ms();
        on_pool!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            // (Call-ID, arrival) → index of the first record with it; the inserted rows come
            // back by that key, in no promised order.
            let mut first: HashMap<(&str, i64), usize> = HashMap::with_capacity(records.len());
            for (i, r) in records.iter().enumerate() {
                first.entry((r.call_id.as_str(), to_ms(r.arrived_at))).or_insert(i);
            }
            let mut ids: Vec<Option<i64>> = vec![None; records.len()];
            for chunk in records.chunks(BATCH_ROWS) {
                let mut insert = sqlx::QueryBuilder::new(
                    "insert into call_record (call_id, workflow, workflow_uri, caller, arrived_at,
                                              welcome_ended_at, queue, queued_at, answered_at,
                                              ended_at, outcome, agent, agent_group,
                                              transferred_to, sip_code, wait_ms, talk_ms,
                                              created_at, announcements, wrap_up_ms) ",
                );
                insert.push_values(chunk, |mut row, r| {
                    row.push_bind(r.call_id.as_str())
                        .push_bind(r.workflow.as_str())
                        .push_bind(r.workflow_uri.as_str())
                        .push_bind(r.caller.as_str())
                        .push_bind(to_ms(r.arrived_at))
                        .push_bind(r.welcome_ended_at.map(to_ms))
                        .push_bind(r.queue.as_deref())
                        .push_bind(r.queued_at.map(to_ms))
                        .push_bind(r.answered_at.map(to_ms))
                        .push_bind(to_ms(r.ended_at))
                        .push_bind(r.outcome.as_str())
                        .push_bind(r.agent.as_ref().map(SipUri::as_str))
                        .push_bind(r.agent_group.as_deref())
                        .push_bind(r.transferred_to.as_deref())
                        .push_bind(r.sip_code.map(i32::from))
                        .push_bind(r.wait.map(duration_to_ms))
                        .push_bind(r.talk.map(duration_to_ms))
                        .push_bind(now)
                        .push_bind(i64::from(r.announcements))
                        .push_bind(r.wrap_up.map(duration_to_ms));
                });
                insert.push(" on conflict (call_id, arrived_at) do nothing returning id, call_id, arrived_at");
                let rows: Vec<(i64, String, i64)> = insert
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(on(Entity::CallRecord))?;
                for (id, call_id, arrived_at) in rows {
                    if let Some(&i) = first.get(&(call_id.as_str(), arrived_at)) {
                        ids[i] = Some(id);
                    }
                }
            }
            // Offers of the records inserted now (not of those already stored).
            let offers: Vec<(i64, &CallOffer)> = records
                .iter()
                .zip(&ids)
                .filter_map(|(r, id)| id.map(|id| (id, r)))
                .flat_map(|(id, r)| r.offers.iter().map(move |o| (id, o)))
                .collect();
            for chunk in offers.chunks(BATCH_ROWS) {
                let mut insert = sqlx::QueryBuilder::new(
                    "insert into call_offer (call_record_id, agent, agent_group, offered_at,
                                             result, sip_code) ",
                );
                insert.push_values(chunk, |mut row, (id, o)| {
                    row.push_bind(*id)
                        .push_bind(o.agent.as_str())
                        .push_bind(o.agent_group.as_deref())
                        .push_bind(to_ms(o.offered_at))
                        .push_bind(o.result.as_str())
                        .push_bind(o.sip_code.map(i32::from));
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(on(Entity::CallRecord))?;
            }
            tx.commit().await.map_err(StoreError::Database)?;
            Ok(())
        }.await)
    }

    /// Calls that arrived in `[from, to)`, by arrival (then by write order), with their offers
    /// in the order made. Holds the whole range in memory: for reports over large ranges, use
    /// [`Store::call_records_page`].
    ///
    /// # Errors
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn call_records_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = self.call_records_page(from, to, after, PAGE_ROWS).await?;
            all.extend(page);
            match next {
                Some(cursor) => after = Some(cursor),
                None => return Ok(all),
            }
        }
    }

    /// One page of [`Store::call_records_between`]: at most `limit` records after `after` (the
    /// cursor the previous page returned; `None` for the first), and the cursor of the next
    /// page, `None` after the last. Pages are read by key (arrival, then id), so records
    /// written meanwhile never shift a page, and memory stays bounded by `limit`.
    ///
    /// # Errors
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn call_records_page(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<RecordCursor>,
        limit: usize,
    ) -> Result<(Vec<CallRecord>, Option<RecordCursor>), StoreError> {
        let limit = limit.clamp(1, PAGE_ROWS);
        // Before the range: (arrival = from, id = 0) precedes every record of it.
        let RecordCursor(after_ms, after_id) = after.unwrap_or(RecordCursor(to_ms(from), 0));
        let (records, offers) = on_pool!(self, pool => async {
            // Both reads in one transaction, so the offers belong to exactly these records.
            let mut tx = pool.begin().await.map_err(StoreError::Database)?;
            let records = sqlx::query_as::<_, RecordRow>(
                "select id, call_id, workflow, workflow_uri, caller, arrived_at, welcome_ended_at,
                        queue, queued_at, answered_at, ended_at, outcome, agent, agent_group,
                        transferred_to, sip_code, wait_ms, talk_ms, announcements, wrap_up_ms
                 from call_record
                 where arrived_at >= $1 and arrived_at < $2
                   and (arrived_at > $3 or (arrived_at = $3 and id > $4))
                 order by arrived_at, id
                 limit $5",
            )
            .bind(to_ms(from))
            .bind(to_ms(to))
            .bind(after_ms)
            .bind(after_id)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(on(Entity::CallRecord))?;
            let mut offers = Vec::new();
            if !records.is_empty() {
                let mut query = sqlx::QueryBuilder::new(
                    "select call_record_id, agent, agent_group, offered_at, result, sip_code
                     from call_offer where call_record_id in (",
                );
                let mut ids = query.separated(", ");
                for r in &records {
                    ids.push_bind(r.id);
                }
                query.push(") order by call_record_id, id");
                offers = query
                    .build_query_as::<OfferRow>()
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(on(Entity::CallRecord))?;
            }
            tx.commit().await.map_err(StoreError::Database)?;
            Ok::<_, StoreError>((records, offers))
        }.await)?;
        let next = (records.len() == limit)
            .then(|| records.last().map(|r| RecordCursor(r.arrived_at, r.id)))
            .flatten();
        let mut by_record: HashMap<i64, Vec<CallOffer>> = HashMap::new();
        for o in offers {
            by_record
                .entry(o.call_record_id)
                .or_default()
                .push(o.into_offer()?);
        }
        let page = records
            .into_iter()
            .map(|row| {
                let offers = by_record.remove(&row.id).unwrap_or_default();
                row.into_record(offers)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((page, next))
    }
}
