// Package wire is the WebSocket wire format of messages, shared by the
// server (package ws) and the Go client (package client): the frame types,
// the error codes and the WebSocket close codes they map to, the encoder
// the server uses and the decoder clients use.
//
// Every frame is one JSON object in one WebSocket text message; see
// docs/PROTOCOL.md for the protocol around them. The package has no
// dependencies beyond the standard library.
package wire
