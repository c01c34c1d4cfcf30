//! A file of several hundred MiB round-trips through the streaming file API
//! with memory bounded by a few chunks. This is its own test binary so that
//! the process's peak resident memory (Linux `VmHWM`) measures this test
//! alone. Blobs go to a temporary directory standing in for the blob store.

use std::io::Write;

use amicus_core::files::{CHUNK_SIZE, ChunkId, FileOpener, FileSealer, SealedChunk};

const FILE_LEN: u64 = 384 << 20;
const PIECE: usize = 300_000;

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Deterministic content, regenerated on demand so that no copy is kept.
fn source_piece(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (((offset + i).wrapping_mul(2654435761)) >> 13) as u8)
        .collect()
}

#[test]
fn a_384_mib_file_round_trips_with_memory_bounded_by_a_few_chunks() {
    let dir = std::env::temp_dir().join(format!("amicus-file-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = |c: SealedChunk| {
        assert_eq!(
            ChunkId::of(&c.blob),
            c.id,
            "chunks are addressed by the hash of their ciphertext"
        );
        std::fs::File::create(dir.join(c.index.to_string()))
            .unwrap()
            .write_all(&c.blob)
            .unwrap();
    };
    let baseline = peak_rss_bytes();

    let mut sealer = FileSealer::new("audience.mp4", "video/mp4", FILE_LEN).unwrap();
    let mut offset = 0u64;
    while offset < FILE_LEN {
        let len = PIECE.min((FILE_LEN - offset) as usize);
        sealer
            .push(&source_piece(offset, len))
            .unwrap()
            .into_iter()
            .for_each(store);
        offset += len as u64;
    }
    while let Some(chunk) = sealer.next_trailing_chunk().unwrap() {
        store(chunk);
    }
    let (rest, manifest) = sealer.finish().unwrap();
    rest.into_iter().for_each(store);

    let mut opener = FileOpener::new(&manifest).unwrap();
    let mut offset = 0u64;
    for index in 0..manifest.chunk_count() {
        let blob = std::fs::read(dir.join(index.to_string())).unwrap();
        let plain = opener.open_chunk(index, &blob).unwrap();
        assert!(
            plain == source_piece(offset, plain.len()),
            "chunk {index} differs"
        );
        offset += plain.len() as u64;
    }
    opener.finish().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(offset, FILE_LEN);

    let growth = peak_rss_bytes().saturating_sub(baseline);
    eprintln!(
        "{} MiB sealed and opened; peak memory growth {:.1} MiB ({} MiB chunks)",
        FILE_LEN >> 20,
        growth as f64 / (1u64 << 20) as f64,
        CHUNK_SIZE >> 20
    );
    assert!(
        growth < 8 * CHUNK_SIZE as u64,
        "peak memory grew by {growth} bytes, more than 8 chunks"
    );
}
