// Command native_echo is the heartbeat bench's native floor: a grpc-go server whose bidirectional streams echo
// each message as it came, with no codec work, handler, credential or database. It serves the same traffic as
// bench/stream_floor.py's grpc.aio echo, so the two say what a beat's transport costs with and without Python.
// It listens on 127.0.0.1 only, prints its port as its first line, and ends on SIGTERM or after -max-seconds.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
)

// bytesCodec passes payloads through untouched. It is named "proto" because that is the codec a client that
// sends plain application/grpc asks for, and the bench's Python clients send raw bytes as such.
type bytesCodec struct{}

func (bytesCodec) Name() string { return "proto" }

func (bytesCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.(*[]byte); ok {
		return *b, nil
	}
	return nil, fmt.Errorf("bytesCodec: cannot marshal %T", v)
}

func (bytesCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("bytesCodec: cannot unmarshal into %T", v)
	}
	// grpc-go reuses the buffer behind data once this returns.
	*b = append((*b)[:0], data...)
	return nil
}

func echo(_ any, stream grpc.ServerStream) error {
	for {
		var message []byte
		if err := stream.RecvMsg(&message); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := stream.SendMsg(&message); err != nil {
			return err
		}
	}
}

var service = grpc.ServiceDesc{
	ServiceName: "bench.Echo",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{
		{StreamName: "Stream", Handler: echo, ServerStreams: true, ClientStreams: true},
	},
}

func main() {
	maxSeconds := flag.Int("max-seconds", 900, "end after this long even if never signalled")
	flag.Parse()
	encoding.RegisterCodec(bytesCodec{})
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server := grpc.NewServer(grpc.ForceServerCodec(bytesCodec{}))
	server.RegisterService(&service, struct{}{})
	fmt.Println(listener.Addr().(*net.TCPAddr).Port)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-signals:
		case <-time.After(time.Duration(*maxSeconds) * time.Second):
		}
		server.Stop()
	}()
	if err := server.Serve(listener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
