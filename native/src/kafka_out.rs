//! A round's events made ready for Kafka and the outboxes without a Python object per event:
//! each event under the outbox of its message's input partition (`RoundProcessor._route`), and
//! the records of each events-topic partition as Kafka record batches (v2, uncompressed) for
//! `workers/prepared_batch.py`.

use rustc_hash::FxHashMap;

/// Kafka's default partitioner's hash (murmur2 as the Java client, seed 0x9747b28c).
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, &b) in rest.iter().enumerate().rev() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The records' part of a record batch for one partition: at most `max_bytes` of records each
/// (one record at least).
pub struct Chunk {
    pub partition: u32,
    pub count: u32,
    pub records: Vec<u8>,
}

pub struct Routed {
    /// One per input partition of the round, in its order: the events' outbox frames (without
    /// the entry's leading kind byte), empty when it has none.
    pub frames: Vec<Vec<u8>>,
    pub chunks: Vec<Chunk>,
}

fn varint(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// `events`: (message id, event line); `keys`: each record's Kafka key, in round order, and
/// `starts`: where each input partition's records begin; `partitions`: of the events topic.
pub fn route(events: &[(Vec<u8>, Vec<u8>)], keys: &[Option<Vec<u8>>], starts: &[usize], partitions: u32, max_bytes: usize) -> Routed {
    // A message's home: the input partition of the last record keyed by it (its message id).
    let mut home: FxHashMap<&[u8], usize> = FxHashMap::default();
    for (at, key) in keys.iter().enumerate() {
        if let Some(key) = key {
            home.insert(key, starts.partition_point(|&s| s <= at) - 1);
        }
    }
    let mut frames = vec![Vec::new(); starts.len()];
    let mut open: FxHashMap<u32, usize> = FxHashMap::default();
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut record = Vec::new();
    for (key, value) in events {
        // A record keyed otherwise than by its message id: any partition of the round will do.
        let frame = &mut frames[home.get(key.as_slice()).copied().unwrap_or(0)];
        frame.push(b'e');
        frame.extend_from_slice(&(key.len() as u32).to_be_bytes());
        frame.extend_from_slice(&(value.len() as u32).to_be_bytes());
        frame.extend_from_slice(key);
        frame.extend_from_slice(value);

        let partition = (murmur2(key) & 0x7fff_ffff) % partitions;
        let at = match open.get(&partition) {
            Some(&at) if chunks[at].records.len() + key.len() + value.len() + 16 <= max_bytes => at,
            _ => {
                chunks.push(Chunk { partition, count: 0, records: Vec::new() });
                open.insert(partition, chunks.len() - 1);
                chunks.len() - 1
            }
        };
        let chunk = &mut chunks[at];
        // attributes, timestamp delta, offset delta, key, value, no headers
        record.clear();
        record.push(0);
        varint(&mut record, 0);
        varint(&mut record, i64::from(chunk.count));
        varint(&mut record, key.len() as i64);
        record.extend_from_slice(key);
        varint(&mut record, value.len() as i64);
        record.extend_from_slice(value);
        varint(&mut record, 0);
        varint(&mut chunk.records, record.len() as i64);
        chunk.records.extend_from_slice(&record);
        chunk.count += 1;
    }
    Routed { frames, chunks }
}

/// A whole record batch (v2) of `count` records, all at `timestamp`, for the producer state
/// the sender gives it: the header, then the records, CRC-32C over everything past the CRC.
pub fn record_batch(records: &[u8], count: u32, timestamp: i64, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(61 + records.len());
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset: the broker's
    out.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes()); // length from here on
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch: none
    out.push(2); // magic
    out.extend_from_slice(&0u32.to_be_bytes()); // CRC, below
    out.extend_from_slice(&0i16.to_be_bytes()); // attributes: no compression, not transactional
    out.extend_from_slice(&(count as i32 - 1).to_be_bytes()); // last offset delta
    out.extend_from_slice(&timestamp.to_be_bytes()); // first timestamp
    out.extend_from_slice(&timestamp.to_be_bytes()); // max timestamp
    out.extend_from_slice(&producer_id.to_be_bytes());
    out.extend_from_slice(&producer_epoch.to_be_bytes());
    out.extend_from_slice(&base_sequence.to_be_bytes());
    out.extend_from_slice(&(count as i32).to_be_bytes());
    out.extend_from_slice(records);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}
