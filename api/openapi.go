// Package api holds the generated contract: Go types, gRPC stubs, gateway handlers and the
// OpenAPI document. Everything below api/enroll is written by `make generate`; this file only
// embeds the OpenAPI document so the server can serve it without reading the file system.
package api

import _ "embed"

// OpenAPI is the merged OpenAPI v2 document for every service, as produced by
// protoc-gen-openapiv2.
//
//go:embed enroll/v1/enroll.swagger.json
var OpenAPI []byte
