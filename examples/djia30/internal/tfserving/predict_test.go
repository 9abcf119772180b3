package tfserving

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodePredictFormats(t *testing.T) {
	for body, columnar := range map[string]bool{
		`{"signature_name":"serving_default","instances":[[1,2,3],[4,5,6.5]]}`: false,
		`{"instances":[{"features":[1,2,3]},{"features":[4,5,6.5]}]}`:          false,
		`{"inputs":{"features":[[1,2,3],[4,5,6.5]]}}`:                          true,
		`{"inputs":[[1,2,3],[4,5,6.5]]}`:                                       true,
	} {
		r, err := DecodePredict([]byte(body), 3)
		if err != nil {
			t.Errorf("%s: %v", body, err)
			continue
		}
		if r.Columnar != columnar || len(r.Instances) != 2 || r.Instances[1][2] != 6.5 || r.SignatureName != DefaultSignature {
			t.Errorf("%s: %+v", body, r)
		}
	}
	r, err := DecodePredict([]byte(`{"inputs":[1,2,0.1]}`), 3)
	if err != nil || len(r.Instances) != 1 || r.Instances[0][2] != float64(float32(0.1)) {
		t.Errorf("flat columnar: %+v %v", r, err)
	}
}

func TestDecodePredictErrors(t *testing.T) {
	for body, want := range map[string]string{
		`{"instances":[[1,2]]}`:                      "expecting shape [-1, 3] but got an instance of 2 values",
		`{"instances":[[1,2,"x"]]}`:                  `JSON Value: "x" Type: String is not of expected type: float`,
		`{"instances":[[1,2,true]]}`:                 "Type: Bool is not of expected type: float",
		`{"instances":[[1,2,[3]]]}`:                  "Type: Array",
		`{"instances":[[1,2,1e39]]}`:                 "out of range for type float",
		`{"instances":[1,2,3]}`:                      "expecting a list of 3 numbers",
		`{"instances":[]}`:                           "non-empty",
		`{"instances":[{"x":[1,2,3]}]}`:              `named input "features"`,
		`{"instances":[[1,2,3]],"inputs":[[1,2,3]]}`: "only one of 'inputs' or 'instances'",
		`{"signature_name":"x"}`:                     "Missing 'inputs' or 'instances' key",
		`{"instances":[[1,2,3]]`:                     "JSON Parse error",
		`{"instances":[[1,2,3]]} {}`:                 "JSON Parse error",
		`[]`:                                         "JSON Parse error",
		`{"inputs":{"features":[[1,2,3]],"y":[1]}}`:  `exactly one named input "features"`,
		`{"inputs":"abc"}`:                           "inputs: expecting a list/array",
	} {
		_, err := DecodePredict([]byte(body), 3)
		var bre *BadRequestError
		if err == nil || !errors.As(err, &bre) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", body, err, want)
		}
	}
}

func TestEncodePredictions(t *testing.T) {
	if got := string(EncodePredictions([]float64{0.5, 0.7310585786300049}, false)); got != "{\"predictions\":[[0.5],[0.7310586]]}\n" {
		t.Errorf("row: %s", got)
	}
	if got := string(EncodePredictions([]float64{0.25}, true)); got != "{\"outputs\":[[0.25]]}\n" {
		t.Errorf("columnar: %s", got)
	}
	if got := string(EncodeLabeled([]float64{0.5, 0.7310585786300049}, false)); got != `{"predictions":[{"label":0,"probability":[0.5]},{"label":1,"probability":[0.7310586]}]}`+"\n" {
		t.Errorf("labeled row: %s", got)
	}
	if got := string(EncodeLabeled([]float64{0.25, 0.75}, true)); got != `{"outputs":{"label":[0,1],"probability":[[0.25],[0.75]]}}`+"\n" {
		t.Errorf("labeled columnar: %s", got)
	}
	// every encoding is valid JSON
	for _, b := range [][]byte{EncodePredictions(nil, false), EncodeLabeled(nil, true), EncodeLabeled([]float64{1e-30}, false)} {
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
}

func FuzzDecodePredict(f *testing.F) {
	f.Add([]byte(`{"instances":[[1,2,3]]}`))
	f.Add([]byte(`{"signature_name":"serving_default","instances":[{"features":[1,2,3]}]}`))
	f.Add([]byte(`{"inputs":{"features":[[1,2,3],[4,5,6]]}}`))
	f.Add([]byte(`{"inputs":[1e38,-2,0]}`))
	f.Add([]byte(`{"instances":[[1,"a",3]]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodePredict(body, 3)
		if err != nil {
			var bre *BadRequestError
			if !errors.As(err, &bre) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if len(r.Instances) == 0 || r.SignatureName == "" {
			t.Fatalf("accepted empty request: %q", body)
		}
		for _, row := range r.Instances {
			if len(row) != 3 {
				t.Fatalf("row of %d values accepted", len(row))
			}
			for _, v := range row {
				if v != float64(float32(v)) || v-v != 0 {
					t.Fatalf("value %v is not a finite float32", v)
				}
			}
		}
	})
}
