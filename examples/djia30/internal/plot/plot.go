// Package plot draws the training curves PNG with the standard library only:
// two stacked line charts (log loss and AUC per epoch), train in blue and
// validation in orange, with axes, tick marks and labels in a 3×5 pixel font.
package plot

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
)

// Series is one named line: Y[i] is the value at epoch i+1.
type Series struct {
	Name  string
	Color color.RGBA
	Y     []float64
}

// Colors used for the train and validation lines.
var (
	Blue   = color.RGBA{31, 119, 180, 255}
	Orange = color.RGBA{255, 127, 14, 255}
	black  = color.RGBA{0, 0, 0, 255}
	grey   = color.RGBA{220, 220, 220, 255}
)

// Panel is one chart: a title and its lines.
type Panel struct {
	Title  string
	Series []Series
}

// Width and Height are the PNG's size in pixels.
const (
	Width  = 800
	Height = 600
)

// Curves renders the panels stacked vertically into a Width×Height PNG. The
// output is deterministic (same input, same bytes).
func Curves(panels []Panel) ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, Width, Height))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	ph := Height / max(len(panels), 1)
	for k, p := range panels {
		drawPanel(img, image.Rect(0, k*ph, Width, (k+1)*ph), p)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func drawPanel(img *image.RGBA, r image.Rectangle, p Panel) {
	const left, right, top, bottom = 70, 20, 30, 40
	plot := image.Rect(r.Min.X+left, r.Min.Y+top, r.Max.X-right, r.Max.Y-bottom)
	lo, hi, n := math.Inf(1), math.Inf(-1), 0
	for _, s := range p.Series {
		n = max(n, len(s.Y))
		for _, v := range s.Y {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if n == 0 || lo > hi {
		lo, hi, n = 0, 1, 1
	}
	if hi-lo < 1e-9 {
		lo, hi = lo-0.5, hi+0.5
	}
	pad := (hi - lo) * 0.05
	lo, hi = lo-pad, hi+pad
	xOf := func(i int) int {
		if n == 1 {
			return plot.Min.X
		}
		return plot.Min.X + i*(plot.Dx()-1)/(n-1)
	}
	yOf := func(v float64) int {
		return plot.Max.Y - 1 - int(math.Round((v-lo)/(hi-lo)*float64(plot.Dy()-1)))
	}
	// grid and y ticks
	for t := 0; t <= 4; t++ {
		v := lo + (hi-lo)*float64(t)/4
		y := yOf(v)
		line(img, plot.Min.X, y, plot.Max.X-1, y, grey)
		line(img, plot.Min.X-5, y, plot.Min.X, y, black)
		text(img, r.Min.X+4, y-4, fmt.Sprintf("%.4f", v), black)
	}
	// x ticks (epochs)
	step := max(1, n/10)
	for i := 0; i < n; i += step {
		x := xOf(i)
		line(img, x, plot.Max.Y, x, plot.Max.Y+5, black)
		text(img, x-4, plot.Max.Y+9, fmt.Sprint(i+1), black)
	}
	text(img, plot.Max.X-60, plot.Max.Y+24, "EPOCH", black)
	// axes
	line(img, plot.Min.X, plot.Min.Y, plot.Min.X, plot.Max.Y, black)
	line(img, plot.Min.X, plot.Max.Y, plot.Max.X-1, plot.Max.Y, black)
	text(img, plot.Min.X, r.Min.Y+8, p.Title, black)
	// legend
	lx := plot.Max.X - 200
	for k, s := range p.Series {
		y := r.Min.Y + 8 + k*12
		for d := 0; d < 3; d++ {
			line(img, lx, y+2+d, lx+20, y+2+d, s.Color)
		}
		text(img, lx+26, y, s.Name, black)
	}
	// lines (2 px wide)
	for _, s := range p.Series {
		for i := 1; i < len(s.Y); i++ {
			x0, y0, x1, y1 := xOf(i-1), yOf(s.Y[i-1]), xOf(i), yOf(s.Y[i])
			line(img, x0, y0, x1, y1, s.Color)
			line(img, x0, y0+1, x1, y1+1, s.Color)
		}
		for i, v := range s.Y {
			x, y := xOf(i), yOf(v)
			for dx := -2; dx <= 2; dx++ {
				for dy := -2; dy <= 2; dy++ {
					img.SetRGBA(x+dx, y+dy, s.Color)
				}
			}
		}
	}
}

// line draws with Bresenham's algorithm.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// glyphs is a 3×5 pixel font: each glyph is 5 rows of 3 bits (MSB left).
var glyphs = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7},
	'4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 1, 1},
	'8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7}, '.': {0, 0, 0, 0, 2}, '-': {0, 0, 7, 0, 0},
	' ': {0, 0, 0, 0, 0}, '(': {1, 2, 2, 2, 1}, ')': {4, 2, 2, 2, 4},
	'A': {2, 5, 7, 5, 5}, 'C': {7, 4, 4, 4, 7}, 'D': {6, 5, 5, 5, 6}, 'E': {7, 4, 6, 4, 7},
	'G': {7, 4, 5, 5, 7}, 'H': {5, 5, 7, 5, 5}, 'I': {7, 2, 2, 2, 7}, 'L': {4, 4, 4, 4, 7},
	'N': {6, 5, 5, 5, 5}, 'O': {7, 5, 5, 5, 7}, 'P': {7, 5, 7, 4, 4}, 'R': {6, 5, 6, 5, 5},
	'S': {7, 4, 7, 1, 7}, 'T': {7, 2, 2, 2, 2}, 'U': {5, 5, 5, 5, 7}, 'V': {5, 5, 5, 5, 2},
	'B': {6, 5, 6, 5, 6}, 'M': {5, 7, 7, 5, 5}, 'F': {7, 4, 6, 4, 4}, 'K': {5, 5, 6, 5, 5},
}

// text draws s at (x, y) (top left) at 2× scale; lower-case is drawn as upper.
func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, ch := range s {
		if ch >= 'a' && ch <= 'z' {
			ch -= 'a' - 'A'
		}
		g := glyphs[ch]
		for row := 0; row < 5; row++ {
			for col := 0; col < 3; col++ {
				if g[row]&(4>>col) != 0 {
					for d := 0; d < 4; d++ {
						img.SetRGBA(x+col*2+d%2, y+row*2+d/2, c)
					}
				}
			}
		}
		x += 8
	}
}
