package nn

import (
	"math"
	"math/rand"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/branchml/djia30/internal/metrics"
)

// The analytic gradients of backward match central finite differences of
// the mean cross-entropy, for every weight and bias of a two-hidden-layer
// network.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	const rows, f = 16, 5
	xs := make([]float64, rows*f)
	y := make([]float64, rows)
	for i := range xs {
		xs[i] = rng.NormFloat64()
	}
	for i := range y {
		y[i] = float64(rng.Intn(2))
	}
	net := New(f, []int{4, 3}, rng)
	x := mat.NewDense(rows, f, xs)
	loss := func() float64 { return metrics.LogLoss(net.Predict(xs), y) }
	grads := net.backward(x, y)
	const h = 1e-6
	checked := 0
	for l, layer := range net.Layers {
		in, out := layer.W.Dims()
		for i := 0; i < in; i++ {
			for j := 0; j < out; j++ {
				w := layer.W.At(i, j)
				layer.W.Set(i, j, w+h)
				up := loss()
				layer.W.Set(i, j, w-h)
				down := loss()
				layer.W.Set(i, j, w)
				num := (up - down) / (2 * h)
				if g := grads[l].W.At(i, j); math.Abs(g-num) > 1e-6*math.Max(1, math.Abs(num)) {
					t.Errorf("layer %d W[%d][%d]: analytic %.10g, numeric %.10g", l, i, j, g, num)
				}
				checked++
			}
		}
		for j := range layer.B {
			b := layer.B[j]
			layer.B[j] = b + h
			up := loss()
			layer.B[j] = b - h
			down := loss()
			layer.B[j] = b
			num := (up - down) / (2 * h)
			if g := grads[l].B[j]; math.Abs(g-num) > 1e-6*math.Max(1, math.Abs(num)) {
				t.Errorf("layer %d B[%d]: analytic %.10g, numeric %.10g", l, j, g, num)
			}
			checked++
		}
	}
	if checked != 5*4+4+4*3+3+3*1+1 {
		t.Errorf("checked %d parameters", checked)
	}
}
