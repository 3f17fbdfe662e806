//! What the domain tests' orders share.
#![allow(dead_code)]

use rescind_domain::{Address, Currency, Customer};

pub fn yen() -> Currency {
    Currency::parse("JPY").unwrap()
}

/// The customer of every test order.
pub fn customer() -> Customer {
    Customer {
        name: "山田 太郎".to_owned(),
        email: None,
        phone: None,
    }
}

/// Where every test order goes.
pub fn address() -> Address {
    Address {
        name: "山田 太郎".to_owned(),
        postcode: "150-0001".to_owned(),
        prefecture: Some("東京都".to_owned()),
        province: None,
        address1: "渋谷区".to_owned(),
        address2: None,
        phone: None,
    }
}
