// Package proto holds the protobuf definitions of Tempest's wire and storage
// messages; the generated Go code is in proto/tempestpb.
package proto

//go:generate ./gen.sh
