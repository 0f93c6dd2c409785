package wire

import (
	"storj.io/drpc"

	"github.com/thunderyurts/thunderyurts/wire/wirecodec"
)

// MarshalAppend lets dRPC encode into each stream's reused send buffer
// (drpcenc.MarshalAppend looks for it): protoc-gen-go-drpc generates it
// only for google.golang.org/protobuf, not for a protolib such as
// wirecodec.
func (drpcEncoding_File_thunder_proto) MarshalAppend(buf []byte, msg drpc.Message) ([]byte, error) {
	return wirecodec.MarshalAppend(buf, msg)
}
