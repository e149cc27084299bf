//! The floor: what moving the same packets costs with nothing but the kernel's loopback UDP.
//! One thread sends `streams` packets of `size` bytes every 20 ms (a burst per tick, as 20 ms
//! timers of many calls fire together); another receives them. CPU is read per thread from
//! `/proc/thread-self/schedstat` (nanoseconds on CPU), so nothing else in the process counts.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the floor run measured.
pub struct Floor {
    /// CPU per packet handled (a send or a receive).
    pub cpu_per_packet: Duration,
}

/// Nanoseconds this thread has been on a CPU.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Sends and receives `streams` × 50 packets a second of `size` bytes for `duration`.
pub fn measure(streams: usize, size: usize, duration: Duration) -> std::io::Result<Floor> {
    let receiver = UdpSocket::bind("127.0.0.1:0")?;
    receiver.set_read_timeout(Some(Duration::from_millis(100)))?;
    let _ = socket2::SockRef::from(&receiver).set_recv_buffer_size(4 << 20);
    let to = receiver.local_addr()?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let done = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let receiving = {
        let (done, received) = (done.clone(), received.clone());
        std::thread::spawn(move || {
            let start = thread_cpu_ns();
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                if receiver.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            thread_cpu_ns() - start
        })
    };
    let sending = std::thread::spawn(move || {
        let start_cpu = thread_cpu_ns();
        let packet = vec![0x80u8; size];
        let start = Instant::now();
        let mut tick = 0u32;
        let mut sent = 0u64;
        while start.elapsed() < duration {
            for _ in 0..streams {
                if sender.send_to(&packet, to).is_ok() {
                    sent += 1;
                }
            }
            tick += 1;
            let next = start + Duration::from_millis(20) * tick;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        (thread_cpu_ns() - start_cpu, sent)
    });
    let (send_ns, sent) = sending.join().expect("sender");
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::Relaxed);
    let receive_ns = receiving.join().expect("receiver");
    let received = received.load(Ordering::Relaxed);
    let handled = (sent + received).max(1);
    Ok(Floor {
        cpu_per_packet: Duration::from_nanos((send_ns + receive_ns) / handled),
    })
}
