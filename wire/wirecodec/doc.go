// Package wirecodec is the protobuf encoding the generated drpc code of
// package wire uses (protoc-gen-go-drpc's protolib option). Messages with
// vtprotobuf's generated methods, which every message of package wire
// has, are encoded and decoded by those, without reflection: each
// replicated write is encoded and decoded three or four times on its way.
// Other messages go through google.golang.org/protobuf.
package wirecodec
