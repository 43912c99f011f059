//! Sending many datagrams with one system call (`sendmmsg` on Linux; one `sendto` each
//! elsewhere). A node that answers a burst of requests hands the kernel all the answers
//! at once instead of paying a system call per datagram.

use crate::engine::Transmit;
use std::io;
use tokio::net::UdpSocket;

/// Most datagrams handed to the kernel in one call.
pub const MAX_BATCH: usize = 64;

/// Sends a prefix of `batch` without waiting; returns how many datagrams went out
/// (at least one), or the error of the first one (`WouldBlock` when the socket is full).
pub fn try_send(socket: &UdpSocket, batch: &[Transmit]) -> io::Result<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    #[cfg(target_os = "linux")]
    if batch.len() > 1 {
        return socket.try_io(tokio::io::Interest::WRITABLE, || sendmmsg(socket, batch));
    }
    let t = &batch[0];
    socket.try_send_to(&t.payload, t.dst).map(|_| 1)
}

#[cfg(target_os = "linux")]
fn sendmmsg(socket: &UdpSocket, batch: &[Transmit]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let batch = &batch[..batch.len().min(MAX_BATCH)];
    let addrs: Vec<socket2::SockAddr> = batch
        .iter()
        .map(|t| socket2::SockAddr::from(t.dst))
        .collect();
    let mut iovs: Vec<libc::iovec> = batch
        .iter()
        .map(|t| libc::iovec {
            iov_base: t.payload.as_ptr() as *mut libc::c_void,
            iov_len: t.payload.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(batch.len());
    for (addr, iov) in addrs.iter().zip(iovs.iter_mut()) {
        // SAFETY: an all-zero msghdr is a valid empty header; the fields set below point
        // into `addrs` and `iovs`, which outlive the call.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
        hdr.msg_namelen = addr.len();
        hdr.msg_iov = iov as *mut libc::iovec;
        hdr.msg_iovlen = 1;
        msgs.push(libc::mmsghdr {
            msg_hdr: hdr,
            msg_len: 0,
        });
    }
    // SAFETY: `msgs` holds `msgs.len()` initialised headers whose buffers (payloads,
    // addresses, iovecs) stay alive and unmoved until the call returns.
    let n = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            0,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok((n as usize).max(1))
    }
}
