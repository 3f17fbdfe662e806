//! Money: a non-negative decimal amount in a currency's minor units. Never a float.

use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// The largest amount rescind accepts for one money field. Far above any real order, small enough
/// that sums over a thousand lines cannot overflow a decimal.
const MONEY_AMOUNT_MAX: i64 = 1_000_000_000_000;

/// An ISO 4217 currency code such as `JPY` or `USD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Accepts three upper-case ASCII letters.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::InvalidCurrency(code.to_owned()));
        }
        Ok(Currency([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }

    /// Digits after the decimal point in this currency (ISO 4217 minor units): 0 for JPY, 3 for KWD.
    pub fn minor_units(&self) -> u32 {
        // Matched on the code's bytes: no UTF-8 check per call (an order's write and its answer ask
        // about twenty-five times).
        match &self.0 {
            b"BIF" | b"CLP" | b"DJF" | b"GNF" | b"ISK" | b"JPY" | b"KMF" | b"KRW" | b"PYG" | b"RWF" | b"UGX"
            | b"UYI" | b"VND" | b"VUV" | b"XAF" | b"XOF" | b"XPF" => 0,
            b"BHD" | b"IQD" | b"JOD" | b"KWD" | b"LYD" | b"OMR" | b"TND" => 3,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a money value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("`{0}` is not an ISO 4217 currency code (three capital letters)")]
    InvalidCurrency(String),
    #[error("`{0}` is not a decimal amount such as \"1200\" or \"9.99\"")]
    NotADecimal(String),
    #[error("`{amount}` has more decimals than {currency} allows ({minor_units})")]
    TooPrecise {
        amount: String,
        currency: String,
        minor_units: u32,
    },
    #[error("`{0}` is larger than the largest accepted amount")]
    TooLarge(String),
}

/// A non-negative amount. The currency is the order's; amounts of one order share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Parses a plain decimal string (digits, at most one point; no sign, exponent or spaces) and
    /// checks it fits the currency's minor units.
    pub fn parse(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let money = Money::parse_stored(text)?;
        let minor_units = currency.minor_units();
        if money.0.normalize().scale() > minor_units {
            return Err(MoneyError::TooPrecise {
                amount: text.to_owned(),
                currency: currency.code().to_owned(),
                minor_units,
            });
        }
        Ok(money)
    }

    /// Parses an amount without a currency check: for values the store wrote itself.
    pub fn parse_stored(text: &str) -> Result<Money, MoneyError> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let well_formed = !whole.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && fraction.bytes().all(|b| b.is_ascii_digit())
            && (fraction.is_empty() != text.contains('.'));
        if !well_formed {
            return Err(MoneyError::NotADecimal(text.to_owned()));
        }
        let value = Decimal::from_str(text).map_err(|_| MoneyError::NotADecimal(text.to_owned()))?;
        if value > Decimal::from(MONEY_AMOUNT_MAX) {
            return Err(MoneyError::TooLarge(text.to_owned()));
        }
        Ok(Money(value))
    }

    pub fn from_minor_units(minor: i64, currency: Currency) -> Money {
        Money(Decimal::new(minor.max(0), currency.minor_units()))
    }

    /// The amount in the currency's smallest unit, as payment providers count it: ¥1,200 is 1200,
    /// $9.99 is 999. `None` when it does not fit or has more decimals than the currency.
    pub fn to_minor_units(&self, currency: Currency) -> Option<i64> {
        let scaled = self.0.checked_mul(Decimal::from(10i64.pow(currency.minor_units())))?;
        if scaled.fract() != Decimal::ZERO {
            return None;
        }
        i64::try_from(scaled).ok()
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// `self - other`, or `None` when that would be negative.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        if other.0 > self.0 {
            None
        } else {
            Some(Money(self.0 - other.0))
        }
    }

    /// `self - other`, floored at zero.
    pub fn saturating_sub(self, other: Money) -> Money {
        self.checked_sub(other).unwrap_or(Money::ZERO)
    }

    pub fn checked_mul(self, quantity: u32) -> Option<Money> {
        self.0.checked_mul(Decimal::from(quantity)).map(Money)
    }

    /// `self × part / whole`, rounded to the currency's minor units (halves away from zero): the share of
    /// an order-wide amount (tax, discount) that belongs to `part` of a `whole` subtotal (B1). Zero when
    /// `whole` is zero.
    pub fn share(self, part: Money, whole: Money, currency: Currency) -> Money {
        if whole.is_zero() {
            return Money::ZERO;
        }
        let exact = self
            .0
            .checked_mul(part.0)
            .map(|product| product / whole.0)
            .unwrap_or(self.0);
        Money(exact.round_dp_with_strategy(
            currency.minor_units(),
            rust_decimal::RoundingStrategy::MidpointAwayFromZero,
        ))
    }

    /// The amount written with exactly the currency's minor units: `"1200"` in JPY, `"9.90"` in USD.
    pub fn format(&self, currency: Currency) -> String {
        let units = currency.minor_units();
        // An amount that already holds exactly the currency's minor units — nearly all: they are
        // parsed and stored so — has its digits written out as they are, without rounding, rescaling
        // or the decimal's own formatter (about twenty-five amounts are written per cancellation,
        // in its order's row and in its answer). A negative zero takes the general way.
        if self.0.scale() == units && !(self.0.is_zero() && self.0.is_sign_negative()) {
            if let Ok(mantissa) = i64::try_from(self.0.mantissa()) {
                return scaled_digits(mantissa, units);
            }
        }
        let mut value = self.0.round_dp(units);
        value.rescale(units);
        value.to_string()
    }
}

/// `mantissa` × 10^−`units` written out with exactly `units` digits after the point, as the decimal's
/// formatter writes it: `-0.05`, `1200`, `9.90`.
fn scaled_digits(mantissa: i64, units: u32) -> String {
    let mut buffer = [0u8; 20];
    let mut start = buffer.len();
    let mut rest = mantissa.unsigned_abs();
    loop {
        start -= 1;
        buffer[start] = b'0' + u8::try_from(rest % 10).expect("a digit");
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = std::str::from_utf8(&buffer[start..]).expect("ASCII digits");
    let units = usize::try_from(units).expect("a few minor units");
    let mut text = String::with_capacity(digits.len() + units + 3);
    if mantissa < 0 {
        text.push('-');
    }
    if digits.len() > units {
        let (whole, fraction) = digits.split_at(digits.len() - units);
        text.push_str(whole);
        if units > 0 {
            text.push('.');
            text.push_str(fraction);
        }
    } else {
        text.push_str("0.");
        text.extend(std::iter::repeat_n('0', units - digits.len()));
        text.push_str(digits);
    }
    text
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.normalize())
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        Money(iter.map(|money| money.0).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpy() -> Currency {
        Currency::parse("JPY").unwrap()
    }
    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    #[test]
    fn a_share_is_rounded_to_the_currencys_minor_units_with_halves_up() {
        let money = |text: &str, currency| Money::parse(text, currency).unwrap();
        // ¥455 of tax on ¥1,000 of a ¥5,000 subtotal is ¥91 exactly; ¥333 gives ¥66.6, so ¥67.
        assert_eq!(
            money("455", jpy()).share(money("1000", jpy()), money("5000", jpy()), jpy()),
            money("91", jpy())
        );
        assert_eq!(
            money("333", jpy()).share(money("1000", jpy()), money("5000", jpy()), jpy()),
            money("67", jpy())
        );
        // $5.20 × 19.99 / 64.97 = 1.59998… → $1.60; ¥5 × 1 / 2 = 2.5 → ¥3.
        assert_eq!(
            money("5.20", usd()).share(money("19.99", usd()), money("64.97", usd()), usd()),
            money("1.60", usd())
        );
        assert_eq!(
            money("5", jpy()).share(money("1", jpy()), money("2", jpy()), jpy()),
            money("3", jpy())
        );
        assert_eq!(
            money("5", jpy()).share(money("1", jpy()), Money::ZERO, jpy()),
            Money::ZERO
        );
    }

    #[test]
    fn amounts_are_written_with_the_currencys_minor_units() {
        assert_eq!(Money::parse("1200", jpy()).unwrap().format(jpy()), "1200");
        assert_eq!(Money::parse("9.9", usd()).unwrap().format(usd()), "9.90");
        assert_eq!(Money::parse("0", usd()).unwrap().format(usd()), "0.00");
    }

    #[test]
    fn floats_signs_exponents_and_excess_decimals_are_refused() {
        for bad in ["-1", "1e3", " 1", "1.", ".5", "", "1.2.3", "abc", "+1"] {
            assert!(Money::parse(bad, usd()).is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(
            Money::parse("10.5", jpy()),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert!(Money::parse("10.50", usd()).is_ok());
        assert!(Money::parse("10.500", usd()).is_ok(), "trailing zeros add no precision");
        assert!(matches!(
            Money::parse("10000000000000", usd()),
            Err(MoneyError::TooLarge(_))
        ));
    }

    #[test]
    fn subtraction_never_goes_below_zero() {
        let five = Money::parse("5", usd()).unwrap();
        let three = Money::parse("3", usd()).unwrap();
        assert_eq!(three.checked_sub(five), None);
        assert_eq!(three.saturating_sub(five), Money::ZERO);
        assert_eq!(five.checked_sub(three).unwrap().format(usd()), "2.00");
    }

    /// The digits written straight out read exactly as the decimal's own formatter writes the same
    /// amount, for amounts at the currency's scale of every size and sign, in currencies of 0, 2 and
    /// 3 minor units.
    #[test]
    fn amounts_at_the_currency_s_scale_are_written_as_the_decimal_formatter_writes_them() {
        let mut mantissas: Vec<i64> = vec![
            0,
            1,
            5,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            1200,
            123_456_789,
            i64::MAX,
            i64::MIN + 1,
        ];
        // And a spread of others, from a fixed sequence.
        let mut next: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2000 {
            next = next
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            mantissas.push(i64::try_from(next >> (1 + next % 60)).expect("fits"));
        }
        for currency in ["JPY", "USD", "KWD"].map(|code| Currency::parse(code).unwrap()) {
            let units = currency.minor_units();
            for mantissa in mantissas.iter().flat_map(|m| [*m, -*m]) {
                let amount = Money(Decimal::new(mantissa, units));
                let mut general = amount.0.round_dp(units);
                general.rescale(units);
                assert_eq!(amount.format(currency), general.to_string(), "{mantissa} at {units}");
            }
        }
    }

    #[test]
    fn minor_units_follow_the_currency() {
        assert_eq!(Money::parse("1200", jpy()).unwrap().to_minor_units(jpy()), Some(1200));
        assert_eq!(Money::parse("9.99", usd()).unwrap().to_minor_units(usd()), Some(999));
        assert_eq!(Money::from_minor_units(999, usd()).format(usd()), "9.99");
        assert_eq!(Money::from_minor_units(1200, jpy()).format(jpy()), "1200");
        assert_eq!(
            Money::parse_stored("0.5").unwrap().to_minor_units(jpy()),
            None,
            "half a yen does not exist"
        );
    }

    #[test]
    fn currency_codes_are_three_capital_letters() {
        assert!(Currency::parse("jpy").is_err());
        assert!(Currency::parse("JP").is_err());
        assert_eq!(Currency::parse("KWD").unwrap().minor_units(), 3);
    }
}
