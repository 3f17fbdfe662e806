//! Fresh ids: a prefix and 26 characters of Crockford base32 holding 48 bits of milliseconds and 80
//! random bits, so ids sort by creation time (newest-first lists page by id) and never collide.

use rand::RngCore;
use rescind_domain::IdSource;
use std::time::{SystemTime, UNIX_EPOCH};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The production id source: time-ordered and random.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn new_id(&mut self, prefix: &'static str) -> String {
        new_id(prefix)
    }
}

/// A new time-ordered random id such as `ord_01JD3…`.
pub fn new_id(prefix: &str) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let mut random = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut random);
    let mut value = (millis & 0xFFFF_FFFF_FFFF) << 80;
    for (index, byte) in random.iter().enumerate() {
        value |= (*byte as u128) << (8 * (9 - index));
    }
    let mut id = String::with_capacity(prefix.len() + 27);
    id.push_str(prefix);
    id.push('_');
    for position in (0..26).rev() {
        id.push(CROCKFORD[((value >> (position * 5)) & 31) as usize] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_sort_by_creation_time() {
        let first = new_id("ord");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_id("ord");
        assert!(first.starts_with("ord_") && first.len() == 30);
        assert!(first < second);
    }
}
