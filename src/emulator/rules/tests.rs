//! PROTOCOL.md's vectors and examples, copied from it: nothing here was computed by vodup.

use super::*;

/// §5's test vector.
const SECRET_KEY: &str = "bLcPnl88WU30VY57ipRhSePfPdOfSruK";
const SECRET_ID: &str = "AKIDxxxxxxxxUfLUEUigQiXqm7CVSspKJnuaiIKtxqAv";
const SHA: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";
const SIGNATURE: &str = "0cwyHQazPO2snYxH++jtRVO+oIJzPUFLSUR4eHh4eHh4eFVmTFVFVWlnUWlYcW03Q1ZTc3BLSm51YWlJS3R4cUF2JnQ9MTQ4ODE2MDI2NCZlPTE0ODgyNDY2NjQmZj10ZW5jZW50X3Rlc3QubXA0JmZzPWE5OTkzZTM2NDcwNjgxNmFiYTNlMjU3MTc4NTBjMjZjOWNkMGQ4OWQmZnQ9bXA0JnVpZD0xMjM0JnI9MTIzNDU2Nzg5";
/// `t` and `e` of the vector.
const ISSUED: u64 = 1_488_160_264;
const EXPIRES: u64 = 1_488_246_664;

fn keys() -> HashMap<String, SecretKey> {
    HashMap::from([(SECRET_ID.to_owned(), SecretKey::new(SECRET_KEY))])
}

/// The vector's plaintext with `edit` applied, signed with HMAC-SHA1 under `key`.
fn signed(key: &str, plain: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(plain.as_bytes());
    let mut raw = mac.finalize().into_bytes().to_vec();
    raw.extend_from_slice(plain.as_bytes());
    BASE64.encode(raw)
}

fn plain(e: u64, f: &str) -> String {
    format!("s={SECRET_ID}&t={ISSUED}&e={e}&f={f}&fs={SHA}&ft=mp4&uid=1234&r=123456789")
}

#[test]
fn the_protocols_signature_vector_passes_within_its_validity() {
    let signed = check_signature(SIGNATURE, &keys(), SHA, ISSUED + 60).unwrap();
    assert_eq!(signed.file_name, "tencent_test.mp4");
    assert_eq!(signed.secret_id, SECRET_ID);
    assert_eq!(signed_vector(), SIGNATURE, "the vector is HMAC ‖ plaintext");
}

fn signed_vector() -> String {
    signed(SECRET_KEY, &plain(EXPIRES, "tencent_test.mp4"))
}

#[test]
fn each_check_of_section_5_refuses_on_its_own() {
    let at = ISSUED + 60;
    let check = |encoded: &str, sha: &str, now| check_signature(encoded, &keys(), sha, now);
    assert_eq!(check(SIGNATURE, SHA, EXPIRES + 1), Err(Refused::Expired));
    assert_eq!(
        check(SIGNATURE, SHA, ISSUED - 301),
        Err(Refused::NotYetValid)
    );
    assert!(check(SIGNATURE, SHA, ISSUED - 300).is_ok(), "300 s of skew");
    assert_eq!(
        check(SIGNATURE, &"0".repeat(40), at),
        Err(Refused::FileShaMismatch)
    );
    assert_eq!(check("not base64!", SHA, at), Err(Refused::NotBase64));
    assert_eq!(
        check(&BASE64.encode([0u8; 20]), SHA, at),
        Err(Refused::TooShort)
    );
    let wrong_key = signed("another key", &plain(EXPIRES, "tencent_test.mp4"));
    assert_eq!(check(&wrong_key, SHA, at), Err(Refused::BadHmac));
    let too_long = signed(SECRET_KEY, &plain(ISSUED + 7_776_001, "a.mp4"));
    assert_eq!(check(&too_long, SHA, at), Err(Refused::TooLong));
    let ninety_days = signed(SECRET_KEY, &plain(ISSUED + 7_776_000, "a.mp4"));
    assert!(check(&ninety_days, SHA, at).is_ok());
    for name in ["a:b.mp4", "a*b.mp4", "", &"n".repeat(41)] {
        let bad = signed(SECRET_KEY, &plain(EXPIRES, name));
        assert_eq!(check(&bad, SHA, at), Err(Refused::BadFileName), "{name:?}");
    }
    let unknown = signed(
        SECRET_KEY,
        &plain(EXPIRES, "a.mp4").replacen("AKIDx", "AKIDy", 1),
    );
    assert_eq!(check(&unknown, SHA, at), Err(Refused::UnknownSecretId));
    let no_uid = signed(
        SECRET_KEY,
        &plain(EXPIRES, "a.mp4").replace("&uid=1234", ""),
    );
    assert_eq!(check(&no_uid, SHA, at), Err(Refused::Missing("uid")));
    let without = |key: &str| plain(EXPIRES, "a.mp4").replace(key, "");
    let no_uid_nor_key = signed("another key", &without("&uid=1234"));
    let first = "a missing key is said before the HMAC is checked";
    assert_eq!(
        check(&no_uid_nor_key, SHA, at),
        Err(Refused::Missing("uid")),
        "{first}"
    );
    let no_fs = signed(SECRET_KEY, &without(&format!("&fs={SHA}")));
    let late = check(&no_fs, SHA, EXPIRES + 1);
    assert_eq!(late, Err(Refused::Missing("fs")), "and before the times");
    let long_r = signed(
        SECRET_KEY,
        &plain(EXPIRES, "a.mp4").replace("r=123456789", "r=12345678901"),
    );
    assert!(matches!(
        check(&long_r, SHA, at),
        Err(Refused::Malformed(_))
    ));
}

#[test]
fn the_protocols_verify_content_vector() {
    let expected = "MzMyOTY0NGIwNTk4YTc2YzZjNDljNTk3YTJhNzNkOGE1ZjA3YWJlOUV4cFRpbWU9MTQ4ODE2MDI2NCZGaWxlSWQ9NzAzMTg2ODIyMjgwODUwNTkxMw==";
    let key = "6367c48dd193d56ea7b0baad25b19455e529f5ee";
    assert_eq!(
        verify_content(key, 1_488_160_264, "7031868222808505913"),
        expected
    );
}

#[test]
fn the_protocols_part_example_and_its_neighbours() {
    // §3: 6,000,000 bytes in parts of 1,048,576: five whole parts, then 757,120 at 5,242,880.
    let (size, p) = (6_000_000, 1_048_576);
    let all: Vec<(u64, u64)> = parts(size, p).collect();
    let whole = [0, 1_048_576, 2_097_152, 3_145_728, 4_194_304].map(|o| (o, p));
    assert_eq!(all[..5], whole);
    assert_eq!(all[5..], [(5_242_880, 757_120)]);
    for (offset, len) in &all {
        assert!(is_part(size, p, *offset, *len));
    }
    assert!(!is_part(size, p, 5_242_880, p), "the last part is the rest");
    assert!(
        !is_part(size, p, 0, 757_120),
        "a part but the last is whole"
    );
    assert!(
        !is_part(size, p, 1, p),
        "offsets are multiples of the part size"
    );
    assert!(!is_part(size, p, 6_291_456, 1), "below the file's end");
    assert!(
        is_part(p, p, 0, p) && !is_part(p, p, p, 0),
        "an exact multiple ends there"
    );
    assert_eq!(parts(0, p).count(), 0);
    assert_eq!(PART_SIZES, [512 * 1024, 1024 * 1024]);
}
