// zeroserver: an OpenAI-compatible streaming server that does no model work, and a minimal compiled
// load client, to measure what a load generator itself costs (bench/harness.py, docs/measurement.md).
//
//	zeroserver serve [-addr 127.0.0.1:0] [-model zero] [-ttft 0] [-tpot 0] [-slots 0]
//	zeroserver load -url http://127.0.0.1:P -c 8 -n 400 -max-tokens 256 [-prompt-words 128]
//
// serve prints "listening on http://HOST:PORT" once it accepts connections. Every completion streams
// max_tokens (or max_completion_tokens) tokens, one SSE event each and flushed one by one (ignore_eos
// is implied), then a usage chunk when stream_options.include_usage is set, then [DONE]. With -ttft/-tpot
// token i is due at start + ttft + i*tpot (an absolute schedule, so writing never drifts the pace);
// with both 0 tokens go out as fast as the client reads them. -slots N serves at most N requests at a
// time (the rest wait, like llama-server's slots). /metrics: zeroserver:requests_processing,
// zeroserver:requests_waiting (gauges), zeroserver:{requests,prompt_tokens,generation_tokens}_total.
//
// load is the reference client: N streamed chat requests at concurrency C over keep-alive connections,
// counting content events; it prints one JSON line (output tok/s, mean TTFT and TPOT).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type counters struct {
	processing, waiting, requests, prompt, generated atomic.Int64
}

type server struct {
	model      string
	ttft, tpot time.Duration
	slots      chan struct{}
	c          counters
}

type chatRequest struct {
	Model               string          `json:"model"`
	Messages            json.RawMessage `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func countWords(raw json.RawMessage) int {
	// a token estimate: the prompt's whitespace-separated words (the request's JSON, strings only)
	n := 0
	for _, f := range bytes.Fields(raw) {
		if len(f) > 0 {
			n++
		}
	}
	return n
}

func (s *server) complete(w http.ResponseWriter, r *http.Request, chat bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, `{"error":{"message":"bad JSON"}}`, http.StatusBadRequest)
		return
	}
	n := 16
	if req.MaxCompletionTokens != nil {
		n = *req.MaxCompletionTokens
	} else if req.MaxTokens != nil {
		n = *req.MaxTokens
	}
	if n < 1 {
		n = 1
	}
	promptTokens := countWords(req.Messages) + countWords(req.Prompt)
	if s.slots != nil {
		s.c.waiting.Add(1)
		select {
		case s.slots <- struct{}{}:
		case <-r.Context().Done():
			s.c.waiting.Add(-1)
			return
		}
		s.c.waiting.Add(-1)
		defer func() { <-s.slots }()
	}
	s.c.processing.Add(1)
	defer s.c.processing.Add(-1)
	start := time.Now()
	s.c.prompt.Add(int64(promptTokens))
	usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`, promptTokens, n, promptTokens+n)
	kind, field := "chat.completion", "message"
	if !chat {
		kind, field = "text_completion", "text"
	}
	if !req.Stream {
		s.wait(start, n-1)
		s.c.generated.Add(int64(n))
		s.c.requests.Add(1)
		text := strings.Repeat("tok ", n)
		w.Header().Set("Content-Type", "application/json")
		if chat {
			fmt.Fprintf(w, `{"id":"zero","object":"%s","created":0,"model":%q,"choices":[{"index":0,"%s":{"role":"assistant","content":%q},"finish_reason":"length"}],"usage":%s}`,
				kind, s.model, field, text, usage)
		} else {
			fmt.Fprintf(w, `{"id":"zero","object":"%s","created":0,"model":%q,"choices":[{"index":0,"text":%q,"finish_reason":"length"}],"usage":%s}`,
				kind, s.model, text, usage)
		}
		return
	}
	flusher, _ := w.(http.Flusher)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	// the events are rendered once: a zero-work server's cost per token is one write and one flush
	var mid, last []byte
	if chat {
		mid = []byte(fmt.Sprintf("data: {\"id\":\"zero\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok \"},\"finish_reason\":null}]}\n\n", s.model))
		last = []byte(fmt.Sprintf("data: {\"id\":\"zero\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok \"},\"finish_reason\":\"length\"}]}\n\n", s.model))
	} else {
		mid = []byte(fmt.Sprintf("data: {\"id\":\"zero\",\"object\":\"text_completion\",\"created\":0,\"model\":%q,\"choices\":[{\"index\":0,\"text\":\"tok \",\"finish_reason\":null}]}\n\n", s.model))
		last = []byte(fmt.Sprintf("data: {\"id\":\"zero\",\"object\":\"text_completion\",\"created\":0,\"model\":%q,\"choices\":[{\"index\":0,\"text\":\"tok \",\"finish_reason\":\"length\"}]}\n\n", s.model))
	}
	for i := 0; i < n; i++ {
		s.wait(start, i)
		ev := mid
		if i == n-1 {
			ev = last
		}
		if _, err := w.Write(ev); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		s.c.generated.Add(1)
	}
	var tail bytes.Buffer
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		fmt.Fprintf(&tail, "data: {\"id\":\"zero\",\"object\":\"%s.chunk\",\"created\":0,\"model\":%q,\"choices\":[],\"usage\":%s}\n\n", kind, s.model, usage)
	}
	tail.WriteString("data: [DONE]\n\n")
	w.Write(tail.Bytes())
	s.c.requests.Add(1)
}

// wait sleeps until token i is due (start + ttft + i*tpot); no-op when the server is not paced.
func (s *server) wait(start time.Time, i int) {
	if s.ttft == 0 && s.tpot == 0 {
		return
	}
	due := start.Add(s.ttft + time.Duration(i)*s.tpot)
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("/v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"object":"list","data":[{"id":%q,"object":"model","created":0,"owned_by":"zeroserver"}]}`, s.model)
	})
	mux.HandleFunc("/v1/chat/completions", func(w http.ResponseWriter, r *http.Request) { s.complete(w, r, true) })
	mux.HandleFunc("/v1/completions", func(w http.ResponseWriter, r *http.Request) { s.complete(w, r, false) })
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		slots := 0
		if s.slots != nil {
			slots = cap(s.slots)
		}
		fmt.Fprintf(w, "# TYPE zeroserver:requests_processing gauge\nzeroserver:requests_processing %d\n", s.c.processing.Load())
		fmt.Fprintf(w, "# TYPE zeroserver:requests_waiting gauge\nzeroserver:requests_waiting %d\n", s.c.waiting.Load())
		fmt.Fprintf(w, "# TYPE zeroserver:slots gauge\nzeroserver:slots %d\n", slots)
		fmt.Fprintf(w, "# TYPE zeroserver:requests_total counter\nzeroserver:requests_total %d\n", s.c.requests.Load())
		fmt.Fprintf(w, "# TYPE zeroserver:prompt_tokens_total counter\nzeroserver:prompt_tokens_total %d\n", s.c.prompt.Load())
		fmt.Fprintf(w, "# TYPE zeroserver:generation_tokens_total counter\nzeroserver:generation_tokens_total %d\n", s.c.generated.Load())
	})
	return mux
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	model := fs.String("model", "zero", "the model name /v1/models lists")
	ttft := fs.Duration("ttft", 0, "delay before the first token")
	tpot := fs.Duration("tpot", 0, "delay between tokens")
	slots := fs.Int("slots", 0, "requests served at a time (0: no limit)")
	fs.Parse(args)
	s := &server{model: *model, ttft: *ttft, tpot: *tpot}
	if *slots > 0 {
		s.slots = make(chan struct{}, *slots)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 30 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type stat struct {
	ok, tokens int
	ttft, tpot float64
}

func load(args []string) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:8080", "server root")
	model := fs.String("model", "zero", "model name")
	conc := fs.Int("c", 1, "concurrency")
	number := fs.Int("n", 100, "requests")
	maxTokens := fs.Int("max-tokens", 256, "output tokens")
	words := fs.Int("prompt-words", 128, "prompt words")
	fs.Parse(args)
	prompt := strings.TrimSpace(strings.Repeat("word ", *words))
	body, _ := json.Marshal(map[string]any{
		"model": *model, "max_tokens": *maxTokens, "stream": true, "ignore_eos": true,
		"stream_options": map[string]bool{"include_usage": true},
		"messages":       []map[string]string{{"role": "user", "content": prompt}},
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc, MaxConnsPerHost: *conc}}
	var next atomic.Int64
	stats := make([]stat, *conc)
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func(st *stat) {
			defer wg.Done()
			for next.Add(1) <= int64(*number) {
				start := time.Now()
				resp, err := client.Post(*url+"/v1/chat/completions", "application/json", bytes.NewReader(body))
				if err != nil {
					continue
				}
				rd := bufio.NewReaderSize(resp.Body, 64*1024)
				n := 0
				var first time.Time
				for {
					line, err := rd.ReadSlice('\n')
					if len(line) > 6 && bytes.HasPrefix(line, []byte("data: ")) && bytes.Contains(line, []byte(`"content"`)) {
						if n == 0 {
							first = time.Now()
						}
						n++
					}
					if err != nil {
						break
					}
				}
				end := time.Now()
				resp.Body.Close()
				if n > 0 {
					st.ok++
					st.tokens += n
					st.ttft += first.Sub(start).Seconds()
					if n > 1 {
						st.tpot += end.Sub(first).Seconds() / float64(n-1)
					}
				}
			}
		}(&stats[w])
	}
	wg.Wait()
	wall := time.Since(t0).Seconds()
	var total stat
	for _, st := range stats {
		total.ok += st.ok
		total.tokens += st.tokens
		total.ttft += st.ttft
		total.tpot += st.tpot
	}
	out := map[string]any{"concurrency": *conc, "requests": *number, "succeeded": total.ok, "seconds": wall,
		"outputTokensPerSecond": float64(total.tokens) / wall}
	if total.ok > 0 {
		out["avgTtftSeconds"] = total.ttft / float64(total.ok)
		out["avgTpotSeconds"] = total.tpot / float64(total.ok)
	}
	enc, _ := json.Marshal(out)
	fmt.Println(string(enc))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: zeroserver serve|load [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "load":
		load(os.Args[2:])
	case "version":
		fmt.Println("zeroserver " + strconv.Itoa(1))
	default:
		fmt.Fprintln(os.Stderr, "usage: zeroserver serve|load [flags]")
		os.Exit(2)
	}
}
