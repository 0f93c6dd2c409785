package wirecodec

import (
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// vtMessage is a message with vtprotobuf's generated methods.
type vtMessage interface {
	proto.Message
	SizeVT() int
	MarshalToSizedBufferVT([]byte) (int, error)
	UnmarshalVT([]byte) error
}

// Marshal encodes msg.
func Marshal(msg any) ([]byte, error) {
	return MarshalAppend(nil, msg)
}

// MarshalAppend appends msg's encoding to buf: dRPC passes each stream's
// send buffer, so a send allocates nothing once the buffer has grown.
// Unlike google.golang.org/protobuf it does not check strings for UTF-8:
// the receiver's Unmarshal does, and refuses the message.
func MarshalAppend(buf []byte, msg any) ([]byte, error) {
	m, ok := msg.(vtMessage)
	if !ok {
		pm, err := protoMessage(msg)
		if err != nil {
			return nil, err
		}
		return proto.MarshalOptions{}.MarshalAppend(buf, pm)
	}
	n := m.SizeVT()
	buf = slices.Grow(buf, n)
	if _, err := m.MarshalToSizedBufferVT(buf[len(buf) : len(buf)+n]); err != nil {
		return nil, err
	}
	return buf[:len(buf)+n], nil
}

// Unmarshal decodes buf into msg, replacing what it held. Like
// google.golang.org/protobuf, it refuses strings that are not valid UTF-8,
// which vtprotobuf's decoder does not check.
func Unmarshal(buf []byte, msg any) error {
	if m, ok := msg.(vtMessage); ok {
		// UnmarshalVT merges into what m holds. ResetVT, generated for
		// the messages decoded into reused ones, keeps their repeated
		// fields' items and byte slices for the next message to fill.
		if r, ok := m.(interface{ ResetVT() }); ok {
			r.ResetVT()
		} else {
			proto.Reset(m)
		}
		if err := m.UnmarshalVT(buf); err != nil {
			return err
		}
		return validUTF8(m.ProtoReflect())
	}
	m, err := protoMessage(msg)
	if err != nil {
		return err
	}
	return proto.Unmarshal(buf, m)
}

// JSONMarshal encodes msg as JSON.
func JSONMarshal(msg any) ([]byte, error) {
	m, err := protoMessage(msg)
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(m)
}

// JSONUnmarshal decodes JSON in buf into msg.
func JSONUnmarshal(buf []byte, msg any) error {
	m, err := protoMessage(msg)
	if err != nil {
		return err
	}
	return protojson.Unmarshal(buf, m)
}

func protoMessage(msg any) (proto.Message, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("wirecodec: %T is not a protobuf message", msg)
	}
	return m, nil
}

// validUTF8 checks every string in m. It visits only the fields that are
// strings or can lead to one (stringPaths), so the log entries a primary
// ships, which have none, are not walked at all.
func validUTF8(m protoreflect.Message) error {
	for _, fd := range stringPaths(m.Descriptor()) {
		if !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			var err error
			v.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				if err = validValue(m, fd.MapKey(), k.Value()); err == nil {
					err = validValue(m, fd.MapValue(), v)
				}
				return err == nil
			})
			if err != nil {
				return err
			}
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				if err := validValue(m, fd, l.Get(i)); err != nil {
					return err
				}
			}
		default:
			if err := validValue(m, fd, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func validValue(parent protoreflect.Message, fd protoreflect.FieldDescriptor, v protoreflect.Value) error {
	switch {
	case fd.Kind() == protoreflect.StringKind:
		if !utf8.ValidString(v.String()) {
			return fmt.Errorf("wirecodec: field %s of %s holds invalid UTF-8", fd.FullName(), parent.Descriptor().FullName())
		}
	case fd.Message() != nil:
		return validUTF8(v.Message())
	}
	return nil
}

var paths sync.Map // protoreflect.FullName → []protoreflect.FieldDescriptor

// stringPaths returns md's fields that are strings, or messages (lists and
// maps of them too) that hold strings at some depth.
func stringPaths(md protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	if p, ok := paths.Load(md.FullName()); ok {
		return p.([]protoreflect.FieldDescriptor)
	}
	var p []protoreflect.FieldDescriptor
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if leadsToString(fd, map[protoreflect.FullName]bool{md.FullName(): true}) {
			p = append(p, fd)
		}
	}
	paths.Store(md.FullName(), p)
	return p
}

// leadsToString reports whether fd is a string or holds one at some
// depth. onPath holds the message types above fd: one met again (a
// recursive message) counts as holding a string, as walking it is only
// slower.
func leadsToString(fd protoreflect.FieldDescriptor, onPath map[protoreflect.FullName]bool) bool {
	if fd.IsMap() {
		return leadsToString(fd.MapKey(), onPath) || leadsToString(fd.MapValue(), onPath)
	}
	if fd.Kind() == protoreflect.StringKind {
		return true
	}
	md := fd.Message()
	if md == nil {
		return false
	}
	if onPath[md.FullName()] {
		return true
	}
	onPath[md.FullName()] = true
	defer delete(onPath, md.FullName())
	fields := md.Fields()
	for i := range fields.Len() {
		if leadsToString(fields.Get(i), onPath) {
			return true
		}
	}
	return false
}
