#![allow(dead_code)] // each test binary uses a different subset of these helpers
//! Helpers shared by the tests that run the real binary (cli.rs, k8s_job.rs): temp folders, a
//! small synthetic MNIST npz and a loopback HTTP server. Leaves out running the binary itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mnist_core::codec::npy::{NpyArray, NpyData};
use mnist_core::codec::{npz, zip};

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mnist-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Images whose bright column encodes the label: learnable in a few hundred steps.
pub fn synthetic_npz(train: usize, test: usize) -> Vec<u8> {
    let make = |n: usize, offset: usize| {
        let labels: Vec<u8> = (0..n).map(|i| ((i * 7 + offset) % 10) as u8).collect();
        let images: Vec<u8> = labels
            .iter()
            .enumerate()
            .flat_map(|(i, &l)| {
                (0..784).map(move |p| if p % 28 == 4 + 2 * l as usize { 250 } else { ((p * 13 + i) % 40) as u8 })
            })
            .collect();
        (images, labels)
    };
    let (xtr, ytr) = make(train, 0);
    let (xte, yte) = make(test, 3);
    let arrays = [
        ("x_train", NpyArray::new(vec![train, 28, 28], NpyData::U8(xtr)).unwrap()),
        ("y_train", NpyArray::new(vec![train], NpyData::U8(ytr)).unwrap()),
        ("x_test", NpyArray::new(vec![test, 28, 28], NpyData::U8(xte)).unwrap()),
        ("y_test", NpyArray::new(vec![test], NpyData::U8(yte)).unwrap()),
    ];
    let refs: Vec<(&str, &NpyArray)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
    npz::write(&refs, zip::Method::Deflated).unwrap()
}

/// A minimal HTTP server on 127.0.0.1 that serves `body` to every GET and counts requests.
pub fn serve(body: Vec<u8>, status: u16) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mnist.npz", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let reply = if status == 200 { &body[..] } else { b"not here" as &[u8] };
            let head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", reply.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(reply);
            let _ = stream.flush();
            let _ = stream.read(&mut [0u8; 1]);
        }
    });
    (url, hits)
}
