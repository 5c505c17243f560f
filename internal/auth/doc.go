// Package auth authenticates machine clients of the enrollment backend and
// authorizes their calls.
//
// Partners, finance tooling and administrators call the gRPC API (directly or
// through grpc-gateway) as OAuth2-style confidential clients: they exchange a
// client id and secret for a short-lived JWT and send it as
// "Authorization: Bearer <token>". The package provides the pieces of that
// flow:
//
//   - Client credentials: NewClientID, NewClientSecret, and argon2id hashing
//     with HashSecret and VerifySecret, so that secrets are only ever stored
//     hashed.
//   - Tokens: Tokens issues and verifies EdDSA (Ed25519) JWTs. Every token
//     names its signing key in the "kid" header so keys can be rotated: the
//     first configured key signs, the others only verify, and JWKS publishes
//     all of them.
//   - Authorization: UnaryServerInterceptor and StreamServerInterceptor
//     authenticate each RPC and check the caller's Role against a Policy that
//     must name every method; a method without a rule is denied (fail closed).
//
// Handlers read the authenticated caller with PrincipalFrom. All time
// comparisons go through an injected clock.Clock so expiry can be tested
// without sleeping.
package auth
