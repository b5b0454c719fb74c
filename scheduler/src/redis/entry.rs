//! Job entries as the stream replies carry them (XREADGROUP, XAUTOCLAIM),
//! read from redis-rs's typed stream replies.

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

use crate::JobId;

/// A stream entry: its id, its job's id and the body if it rode inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// The entry's id in the stream.
    pub id: String,
    /// The job it carries.
    pub job: JobId,
    /// The request body, when it rode inline.
    pub body: Option<Vec<u8>>,
}

impl Entry {
    /// The entry `stream_id` is, unless it names no job. Field values are
    /// read as bytes: an inline body need not be UTF-8.
    fn parse(stream_id: &StreamId) -> Option<Self> {
        let job = stream_id.get::<String>("id")?;
        Some(Self { id: stream_id.id.clone(), job: JobId(job), body: stream_id.get::<Vec<u8>>("body") })
    }

    /// The first job entry an XREADGROUP read returned.
    pub fn first_read(reply: &StreamReadReply) -> Option<Self> {
        reply.keys.iter().flat_map(|key| &key.ids).find_map(Self::parse)
    }

    /// The first job entry an XAUTOCLAIM claimed.
    pub fn first_claimed(reply: &StreamAutoClaimReply) -> Option<Self> {
        reply.claimed.iter().find_map(Self::parse)
    }
}
