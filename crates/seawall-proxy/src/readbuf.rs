//! Read buffers: how much room a socket read gets.
//!
//! Parsed heads and body pieces are split off a connection's read buffer as
//! shared `Bytes`, so its allocation stays shared until they are dropped. A
//! `reserve(READ_SIZE)` before every read would then allocate a fresh 16 KiB
//! block for nearly every request (glibc serves blocks that size from its
//! bins, slowly). Instead, a read goes into the room the buffer still has, and
//! a new block is taken only when less than [`MIN_ROOM`] is left: small
//! requests and responses share one block by the dozen.
use bytes::BytesMut;

/// Bytes a connection's buffer is grown by when it runs out of room.
pub const READ_SIZE: usize = 16 * 1024;

/// Less room than this left, and the buffer grows before the next read.
pub const MIN_ROOM: usize = 4 * 1024;

/// Make sure `buf` has room for a read of at least [`MIN_ROOM`] bytes.
pub fn room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < MIN_ROOM {
        buf.reserve(READ_SIZE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_grows_only_when_its_room_runs_low() {
        let mut buf = BytesMut::new();
        room(&mut buf);
        let cap = buf.capacity();
        assert!(cap >= READ_SIZE);
        buf.extend_from_slice(&[b'x'; 300]);
        let head = buf.split_to(300).freeze(); // still shares the block
        room(&mut buf);
        assert_eq!(buf.capacity(), cap - 300, "the rest of the block is used");
        drop(head);
        buf.extend_from_slice(&vec![b'y'; cap - 300 - MIN_ROOM + 1]);
        room(&mut buf);
        assert!(buf.capacity() - buf.len() >= MIN_ROOM);
    }
}
