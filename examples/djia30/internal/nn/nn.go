// Package nn is a small feed-forward binary classifier on gonum matrices:
// ReLU hidden layers, a sigmoid output unit, binary cross-entropy loss, Adam,
// seeded mini-batch shuffling and early stopping on validation log loss.
//
// Shapes: an input batch X is rows×F (row-major, one example per row); layer
// l has weights W_l of shape in×out and bias b_l of length out; the output is
// rows×1 probabilities P(label = 1). Training is deterministic: the same data,
// Config and seed give bit-identical weights.
package nn

import (
	"errors"
	"fmt"
	"math"
	"math/rand"

	"gonum.org/v1/gonum/mat"

	"github.com/branchml/djia30/internal/metrics"
)

// Layer is one dense layer: out = act(in·W + B). W is in×out, B has length out.
// Activation is "relu" or "sigmoid".
type Layer struct {
	W          *mat.Dense
	B          []float64
	Activation string
}

// Network is a stack of layers; the last one is a single sigmoid unit.
type Network struct {
	Layers []Layer
}

// New returns a network for inputs features wide with the given hidden layer
// sizes, initialized from rng: He-normal weights for ReLU layers,
// Glorot-normal for the sigmoid output, zero biases.
func New(inputs int, hidden []int, rng *rand.Rand) *Network {
	sizes := append(append([]int{inputs}, hidden...), 1)
	n := &Network{}
	for l := 0; l+1 < len(sizes); l++ {
		in, out := sizes[l], sizes[l+1]
		act, scale := "relu", math.Sqrt(2/float64(in))
		if l+2 == len(sizes) {
			act, scale = "sigmoid", math.Sqrt(2/float64(in+out))
		}
		w := make([]float64, in*out)
		for i := range w {
			w[i] = rng.NormFloat64() * scale
		}
		n.Layers = append(n.Layers, Layer{W: mat.NewDense(in, out, w), B: make([]float64, out), Activation: act})
	}
	return n
}

// Inputs returns the number of input features.
func (n *Network) Inputs() int { r, _ := n.Layers[0].W.Dims(); return r }

// Clone returns a deep copy of n.
func (n *Network) Clone() *Network {
	c := &Network{Layers: make([]Layer, len(n.Layers))}
	for i, l := range n.Layers {
		c.Layers[i] = Layer{W: mat.DenseCopyOf(l.W), B: append([]float64(nil), l.B...), Activation: l.Activation}
	}
	return c
}

// forward computes the activations of every layer for batch x (rows×F);
// acts[0] is x, acts[l+1] the output of layer l.
func (n *Network) forward(x *mat.Dense) []*mat.Dense {
	acts := []*mat.Dense{x}
	cur := x
	for _, l := range n.Layers {
		r, _ := cur.Dims()
		_, out := l.W.Dims()
		z := mat.NewDense(r, out, nil)
		z.Mul(cur, l.W)
		raw := z.RawMatrix()
		for i := 0; i < r; i++ {
			row := raw.Data[i*raw.Stride : i*raw.Stride+out]
			for j := range row {
				v := row[j] + l.B[j]
				if l.Activation == "relu" {
					if v < 0 {
						v = 0
					}
				} else {
					v = sigmoid(v)
				}
				row[j] = v
			}
		}
		acts = append(acts, z)
		cur = z
	}
	return acts
}

// Predict returns P(label = 1) for each row of x (rows×F, row-major).
func (n *Network) Predict(x []float64) []float64 {
	f := n.Inputs()
	rows := len(x) / f
	if rows == 0 {
		return nil
	}
	acts := n.forward(mat.NewDense(rows, f, x))
	out := acts[len(acts)-1]
	p := make([]float64, rows)
	for i := range p {
		p[i] = out.At(i, 0)
	}
	return p
}

func sigmoid(v float64) float64 {
	if v >= 0 {
		return 1 / (1 + math.Exp(-v))
	}
	e := math.Exp(v)
	return e / (1 + e)
}

// Config holds the training hyper-parameters.
type Config struct {
	Hidden       []int   // hidden layer sizes, e.g. [32 16]
	LearningRate float64 // Adam step size
	BatchSize    int     // rows per mini-batch
	Epochs       int     // maximum epochs
	Patience     int     // stop after this many epochs without a lower validation log loss
	Seed         int64   // seeds initialization and shuffling (math/rand)
}

// Epoch is one epoch's metrics on the full train and validation sets
// (evaluated after the epoch's updates).
type Epoch struct {
	Epoch          int // 1-based
	TrainLoss      float64
	TrainAUC       float64
	ValidationLoss float64
	ValidationAUC  float64
}

// History is the outcome of Train.
type History struct {
	Epochs    []Epoch
	BestEpoch int // 1-based epoch whose weights were kept
}

// Train fits a new network on x (rows×f) and labels y (0/1), with early
// stopping on the validation set (xv, yv): after each epoch the validation log
// loss is computed; the weights of the epoch with the lowest one are restored
// at the end. Mini-batches are drawn from a permutation of the rows shuffled
// each epoch with math/rand seeded by cfg.Seed.
func Train(cfg Config, f int, x, y, xv, yv []float64) (*Network, History, error) {
	var h History
	if f <= 0 || len(x) != f*len(y) || len(xv) != f*len(yv) {
		return nil, h, fmt.Errorf("nn: shape mismatch: %d values for %d rows × %d features (validation %d for %d)", len(x), len(y), f, len(xv), len(yv))
	}
	if len(y) == 0 || len(yv) == 0 {
		return nil, h, errors.New("nn: empty train or validation set")
	}
	if cfg.BatchSize <= 0 || cfg.Epochs <= 0 || cfg.LearningRate <= 0 || cfg.Patience < 0 {
		return nil, h, fmt.Errorf("nn: bad config %+v", cfg)
	}
	for _, u := range cfg.Hidden {
		if u <= 0 {
			return nil, h, fmt.Errorf("nn: bad hidden layer size %d", u)
		}
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	net := New(f, cfg.Hidden, rng)
	opt := newAdam(net, cfg.LearningRate)
	rows := len(y)
	perm := make([]int, rows)
	for i := range perm {
		perm[i] = i
	}
	bx := make([]float64, cfg.BatchSize*f)
	by := make([]float64, cfg.BatchSize)
	best, bestLoss, since := net.Clone(), math.Inf(1), 0
	for ep := 1; ep <= cfg.Epochs; ep++ {
		rng.Shuffle(rows, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		for start := 0; start < rows; start += cfg.BatchSize {
			end := min(start+cfg.BatchSize, rows)
			b := end - start
			for k := 0; k < b; k++ {
				r := perm[start+k]
				copy(bx[k*f:(k+1)*f], x[r*f:(r+1)*f])
				by[k] = y[r]
			}
			grads := net.backward(mat.NewDense(b, f, bx[:b*f]), by[:b])
			opt.step(net, grads)
		}
		pt, pv := net.Predict(x), net.Predict(xv)
		e := Epoch{Epoch: ep, TrainLoss: metrics.LogLoss(pt, y), TrainAUC: metrics.AUC(pt, y),
			ValidationLoss: metrics.LogLoss(pv, yv), ValidationAUC: metrics.AUC(pv, yv)}
		h.Epochs = append(h.Epochs, e)
		if e.ValidationLoss < bestLoss {
			bestLoss, best, h.BestEpoch, since = e.ValidationLoss, net.Clone(), ep, 0
		} else if since++; since >= cfg.Patience {
			break
		}
	}
	return best, h, nil
}

// grad holds one layer's gradients.
type grad struct {
	W *mat.Dense
	B []float64
}

// backward returns the gradients of the mean binary cross-entropy over the
// batch x (b×F), y (b) with respect to every layer's W and B.
func (n *Network) backward(x *mat.Dense, y []float64) []grad {
	acts := n.forward(x)
	b := len(y)
	out := acts[len(acts)-1]
	// dL/dz of the sigmoid output with cross-entropy: (p - y)/b
	delta := mat.NewDense(b, 1, nil)
	for i := 0; i < b; i++ {
		delta.Set(i, 0, (out.At(i, 0)-y[i])/float64(b))
	}
	grads := make([]grad, len(n.Layers))
	for l := len(n.Layers) - 1; l >= 0; l-- {
		in, outW := n.Layers[l].W.Dims()
		gw := mat.NewDense(in, outW, nil)
		gw.Mul(acts[l].T(), delta)
		gb := make([]float64, outW)
		raw := delta.RawMatrix()
		for i := 0; i < b; i++ {
			for j := 0; j < outW; j++ {
				gb[j] += raw.Data[i*raw.Stride+j]
			}
		}
		grads[l] = grad{W: gw, B: gb}
		if l == 0 {
			break
		}
		prev := mat.NewDense(b, in, nil)
		prev.Mul(delta, n.Layers[l].W.T())
		// ReLU derivative: activation > 0
		a := acts[l].RawMatrix()
		p := prev.RawMatrix()
		for i := 0; i < b; i++ {
			for j := 0; j < in; j++ {
				if a.Data[i*a.Stride+j] <= 0 {
					p.Data[i*p.Stride+j] = 0
				}
			}
		}
		delta = prev
	}
	return grads
}

// adam is the Adam optimizer (Kingma & Ba 2015) with beta1 0.9, beta2 0.999,
// epsilon 1e-8 and bias correction.
type adam struct {
	lr     float64
	t      int
	mw, vw [][]float64
	mb, vb [][]float64
}

func newAdam(n *Network, lr float64) *adam {
	a := &adam{lr: lr}
	for _, l := range n.Layers {
		r, c := l.W.Dims()
		a.mw = append(a.mw, make([]float64, r*c))
		a.vw = append(a.vw, make([]float64, r*c))
		a.mb = append(a.mb, make([]float64, c))
		a.vb = append(a.vb, make([]float64, c))
	}
	return a
}

func (a *adam) step(n *Network, g []grad) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	a.t++
	c1 := 1 - math.Pow(b1, float64(a.t))
	c2 := 1 - math.Pow(b2, float64(a.t))
	upd := func(p, gr, m, v []float64) {
		for i := range p {
			m[i] = b1*m[i] + (1-b1)*gr[i]
			v[i] = b2*v[i] + (1-b2)*gr[i]*gr[i]
			p[i] -= a.lr * (m[i] / c1) / (math.Sqrt(v[i]/c2) + eps)
		}
	}
	for l := range n.Layers {
		w := n.Layers[l].W.RawMatrix()
		gw := g[l].W.RawMatrix()
		upd(w.Data, gw.Data, a.mw[l], a.vw[l])
		upd(n.Layers[l].B, g[l].B, a.mb[l], a.vb[l])
	}
}
