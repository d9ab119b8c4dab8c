//! The frame codec against tokio-util's `LengthDelimitedCodec` with the same
//! format (4-byte big-endian length), decoding a buffer of many frames and
//! encoding them: the measurement behind using our own `Decoder`.
//!
//! Run: `cargo bench --bench frame`.

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sockit::frame::FrameCodec;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

fn wire(frames: usize, size: usize) -> BytesMut {
    let mut codec = FrameCodec::default();
    let mut wire = BytesMut::new();
    let payload = vec![0xabu8; size];
    for _ in 0..frames {
        codec.encode(payload.as_slice(), &mut wire).unwrap();
    }
    wire
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for size in [64usize, 16 * 1024] {
        let frames = (4 << 20) / size;
        let wire = wire(frames, size);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("sockit FrameCodec", size),
            &wire,
            |b, wire| {
                b.iter(|| {
                    let mut buf = wire.clone();
                    let mut codec = FrameCodec::default();
                    let mut count = 0;
                    while let Some(frame) = codec.decode(&mut buf).unwrap() {
                        count += frame.len();
                    }
                    count
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("tokio-util LengthDelimitedCodec", size),
            &wire,
            |b, wire| {
                b.iter(|| {
                    let mut buf = wire.clone();
                    let mut codec = LengthDelimitedCodec::builder()
                        .max_frame_length(16 << 20)
                        .new_codec();
                    let mut count = 0;
                    while let Some(frame) = codec.decode(&mut buf).unwrap() {
                        count += frame.len();
                    }
                    count
                })
            },
        );
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for size in [64usize, 16 * 1024] {
        let frames = (4 << 20) / size;
        let payload = bytes::Bytes::from(vec![0xabu8; size]);
        group.throughput(Throughput::Bytes((frames * (size + 4)) as u64));
        group.bench_with_input(
            BenchmarkId::new("sockit FrameCodec", size),
            &payload,
            |b, payload| {
                b.iter(|| {
                    let mut codec = FrameCodec::default();
                    let mut out = BytesMut::with_capacity(frames * (size + 4));
                    for _ in 0..frames {
                        codec.encode(payload.clone(), &mut out).unwrap();
                    }
                    out.len()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("tokio-util LengthDelimitedCodec", size),
            &payload,
            |b, payload| {
                b.iter(|| {
                    let mut codec = LengthDelimitedCodec::new();
                    let mut out = BytesMut::with_capacity(frames * (size + 4));
                    for _ in 0..frames {
                        codec.encode(payload.clone(), &mut out).unwrap();
                    }
                    out.len()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
