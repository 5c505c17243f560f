// Package codes creates, parses and protects the enrollment codes mailed to
// the people affected by the breach.
//
// A code is 15 random Crockford base32 symbols (75 bits) followed by one Luhn
// mod 32 check symbol, shown as XXXX-XXXX-XXXX-XXXX. The check symbol lets the
// enrollment form reject every single mistyped symbol and almost every swap of
// two neighbouring symbols before any lookup happens, so typos do not count as
// failed guesses. The one swap it cannot see is 0 next to Z (0Z versus Z0): in
// Luhn mod 32 both orders add the same amount to the sum, just as 09 and 90 do
// in the decimal Luhn used for card numbers.
//
// Parse is deliberately forgiving about how people type: case, hyphens and
// whitespace do not matter, and I, L and O are read as 1, 1 and 0 because
// Crockford base32 leaves those letters out for being easily confused. U is
// also missing from the alphabet and is rejected.
//
// Plaintext codes are never stored. Codes are derived from a per-batch secret
// (Derive), so the mail-house export can regenerate them on demand; the batch
// secret is stored only wrapped under a MasterKey, and destroying the wrapped
// secret makes the batch's codes unrecoverable. Redemption looks codes up by a
// keyed HMAC (Keyring), and the keyring holds several keys so that the lookup
// key can be rotated while codes hashed under older keys are still found.
//
// Nothing here does I/O apart from reading randomness; error messages never
// repeat a code or a secret, so they are safe to log and to show to users.
package codes
