//! The frame codec over a real TCP connection: frames written in arbitrary
//! pieces arrive whole, and a connection cut inside a frame is a typed error.

mod support;

use futures::StreamExt;
use sockit::frame::{FrameCodec, FrameError};
use support::bounded;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Encoder, FramedRead};

async fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    client.set_nodelay(true).unwrap();
    (client, server)
}

fn encode(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut codec = FrameCodec::default();
    let mut wire = bytes::BytesMut::new();
    for frame in frames {
        codec.encode(frame.as_slice(), &mut wire).unwrap();
    }
    wire.to_vec()
}

#[tokio::test]
async fn frames_written_in_odd_pieces_arrive_whole() {
    let (mut client, server) = connected_pair().await;
    let frames: Vec<Vec<u8>> = vec![
        b"first".to_vec(),
        vec![],
        vec![0xff; 100_000],
        "第二".as_bytes().to_vec(),
    ];
    let wire = encode(&frames);
    let writer = tokio::spawn(async move {
        // Pieces of 1, 2, 3, ... bytes, each flushed on its own.
        let mut at = 0;
        let mut piece = 1;
        while at < wire.len() {
            let end = (at + piece).min(wire.len());
            client.write_all(&wire[at..end]).await.unwrap();
            at = end;
            piece = piece % 997 + 1;
        }
    });
    let mut reader = FramedRead::new(server, FrameCodec::default());
    for expected in &frames {
        let frame = bounded("a frame", reader.next())
            .await
            .expect("a frame")
            .unwrap();
        assert_eq!(&frame[..], &expected[..]);
    }
    writer.await.unwrap();
    assert!(
        bounded("end", reader.next()).await.is_none(),
        "clean end after the last frame"
    );
}

#[tokio::test]
async fn a_connection_cut_inside_a_frame_is_truncated_not_a_clean_end() {
    let (mut client, server) = connected_pair().await;
    let wire = encode(&[b"whole".to_vec(), b"cut in half".to_vec()]);
    client.write_all(&wire[..wire.len() - 5]).await.unwrap();
    drop(client);
    let mut reader = FramedRead::new(server, FrameCodec::default());
    assert_eq!(
        &bounded("frame", reader.next()).await.unwrap().unwrap()[..],
        b"whole"
    );
    let err = bounded("error", reader.next()).await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Truncated {
                expected: 15,
                received: 10
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_oversized_frame_from_a_peer_is_refused() {
    let (mut client, server) = connected_pair().await;
    client.write_all(&(2_000u32).to_be_bytes()).await.unwrap();
    let mut reader = FramedRead::new(server, FrameCodec::new(1_000));
    let err = bounded("error", reader.next()).await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::TooLarge {
                len: 2_000,
                max: 1_000
            }
        ),
        "{err}"
    );
}
