#!/usr/bin/env python3
"""Render terminal text with ANSI SGR escapes (as printed by `tmux capture-pane -e -p -N`) to a PNG.

Usage:
    ansi_png.py [INPUT|-] -o OUT.png [--cols N] [--rows N] [--title TEXT]
    ansi_png.py --tmux TARGET [--tmux-socket NAME] -o OUT.png [--title TEXT]
    ansi_png.py --selftest

The first form renders one captured screen (INPUT, or stdin); without --cols/--rows the grid is
the longest line by the number of lines. The second captures every pane of a tmux window itself
and composes them at their positions, with tmux-style borders (and pane titles when the window's
pane-border-status is on) and the active pane's cursor, so a split window looks as it does on
screen. Output depends only on the input, the options, the fonts and the Pillow version, so the
same capture always gives the same PNG.

Styles understood: reset, bold, dim, italic, underline (4, 4:n, 21), blink (ignored), reverse,
hidden, strikethrough, their resets (22-29), foreground/background 30-37/90-97/40-47/100-107,
38;5;n/48;5;n, 38;2;r;g;b/48;2;r;g;b (and the colon forms), 39/49. Other escape sequences
(cursor movement, OSC, ...) are skipped. Wide characters (CJK, most emoji) take two cells;
combining marks join the previous cell. Box-drawing lines, block elements and braille patterns
are drawn as shapes rather than font glyphs, so ratatui borders, gauges and charts join without
gaps whatever the font size; everything else is DejaVu Sans Mono (regular, bold, oblique),
falling back to DejaVu Sans for characters the monospace face lacks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import unicodedata
from dataclasses import dataclass, field

FONT_DIR = os.environ.get("ANSI_PNG_FONT_DIR", "/usr/share/fonts/truetype/dejavu")
FONT_FILES = {
    (False, False): "DejaVuSansMono.ttf",
    (True, False): "DejaVuSansMono-Bold.ttf",
    (False, True): "DejaVuSansMono-Oblique.ttf",
    (True, True): "DejaVuSansMono-BoldOblique.ttf",
}
FALLBACK_FONT_FILES = {False: "DejaVuSans.ttf", True: "DejaVuSans-Bold.ttf"}

# Dark theme (One Dark-like). Index 0-15 are the ANSI colours, normal then bright.
THEME_BG = (0x1E, 0x21, 0x27)
THEME_FG = (0xD7, 0xDA, 0xE0)
THEME_CURSOR = (0xD7, 0xDA, 0xE0)
THEME_BORDER = (0x4B, 0x52, 0x63)
THEME_TITLEBAR = (0x2B, 0x2F, 0x37)
PALETTE16 = [
    (0x3B, 0x40, 0x48), (0xE0, 0x6C, 0x75), (0x98, 0xC3, 0x79), (0xE5, 0xC0, 0x7B),
    (0x61, 0xAF, 0xEF), (0xC6, 0x78, 0xDD), (0x56, 0xB6, 0xC2), (0xAB, 0xB2, 0xBF),
    (0x5C, 0x63, 0x70), (0xFF, 0x7B, 0x86), (0xB5, 0xE8, 0x90), (0xFF, 0xD6, 0x8A),
    (0x7C, 0xC4, 0xFF), (0xDE, 0x93, 0xF0), (0x7F, 0xD7, 0xE2), (0xF0, 0xF2, 0xF5),
]

BOLD, DIM, ITALIC, UNDERLINE, REVERSE, HIDDEN, STRIKE = (1 << i for i in range(7))


def xterm256(n: int) -> tuple[int, int, int]:
    """The RGB value of colour n of the xterm 256-colour palette (0-15 from the theme)."""
    if n < 16:
        return PALETTE16[n]
    if n < 232:
        n -= 16
        levels = (0, 95, 135, 175, 215, 255)
        return (levels[n // 36], levels[(n // 6) % 6], levels[n % 6])
    v = 8 + 10 * (n - 232)
    return (v, v, v)


# ----------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class Style:
    fg: object = None  # None (default), int 0-255, or (r, g, b)
    bg: object = None
    flags: int = 0


DEFAULT_STYLE = Style()


@dataclass
class Cell:
    ch: str = " "
    style: Style = DEFAULT_STYLE
    wide: bool = False  # first half of a two-cell character
    cont: bool = False  # second half of a two-cell character: draw nothing


@dataclass
class Screen:
    cols: int
    rows: int
    grid: list = field(default_factory=list)  # rows of Cell
    cursor: tuple | None = None  # (x, y) to draw a block cursor at

    @staticmethod
    def blank(cols: int, rows: int) -> "Screen":
        return Screen(cols, rows, [[Cell() for _ in range(cols)] for _ in range(rows)])

    def text(self) -> str:
        """The plain text, one line per row, trailing spaces trimmed (for tests and debugging)."""
        return "\n".join(
            "".join(c.ch for c in row if not c.cont).rstrip() for row in self.grid
        )


def char_width(ch: str) -> int:
    """Terminal cell width: 0 for combining/format characters, 2 for wide, else 1."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    if ch in "\u200b\u200c\u200d\ufeff":
        return 0
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 2
    return 1


def _colour_arg(params: list, i: int):
    """Parse the colour after a 38/48/58 at params[i]; returns (colour or None, next index)."""
    p = params[i]
    if len(p) > 1:  # colon form: 38:5:n or 38:2:[cs]:r:g:b
        sub = p[1:]
        if sub and sub[0] == 5 and len(sub) >= 2:
            return sub[1] % 256, i + 1
        if sub and sub[0] == 2:
            rgb = sub[1:]
            if len(rgb) >= 4:
                rgb = rgb[1:]  # colour-space id present
            if len(rgb) >= 3:
                return tuple(max(0, min(255, v)) for v in rgb[:3]), i + 1
        return None, i + 1
    if i + 1 < len(params):
        kind = params[i + 1][0]
        if kind == 5 and i + 2 < len(params):
            return params[i + 2][0] % 256, i + 3
        if kind == 2 and i + 4 < len(params):
            return tuple(max(0, min(255, params[i + k][0])) for k in (2, 3, 4)), i + 5
    return None, len(params)


def apply_sgr(style: Style, raw: str) -> Style:
    """Apply one SGR sequence's parameters (the text between 'ESC [' and 'm') to a style."""
    params = []
    for part in (raw.split(";") if raw else ["0"]):
        params.append([int(x) if x.isdigit() else 0 for x in part.split(":")] or [0])
    fg, bg, flags = style.fg, style.bg, style.flags
    i = 0
    while i < len(params):
        p = params[i]
        n = p[0]
        if n == 0:
            fg, bg, flags = None, None, 0
        elif n == 1:
            flags |= BOLD
        elif n == 2:
            flags |= DIM
        elif n == 3:
            flags |= ITALIC
        elif n == 4:
            if len(p) > 1 and p[1] == 0:
                flags &= ~UNDERLINE
            else:
                flags |= UNDERLINE
        elif n == 21:
            flags |= UNDERLINE
        elif n == 7:
            flags |= REVERSE
        elif n == 8:
            flags |= HIDDEN
        elif n == 9:
            flags |= STRIKE
        elif n == 22:
            flags &= ~(BOLD | DIM)
        elif n == 23:
            flags &= ~ITALIC
        elif n == 24:
            flags &= ~UNDERLINE
        elif n == 27:
            flags &= ~REVERSE
        elif n == 28:
            flags &= ~HIDDEN
        elif n == 29:
            flags &= ~STRIKE
        elif 30 <= n <= 37:
            fg = n - 30
        elif 90 <= n <= 97:
            fg = n - 90 + 8
        elif 40 <= n <= 47:
            bg = n - 40
        elif 100 <= n <= 107:
            bg = n - 100 + 8
        elif n == 39:
            fg = None
        elif n == 49:
            bg = None
        elif n in (38, 48, 58):
            colour, nxt = _colour_arg(params, i)
            if n == 38 and colour is not None:
                fg = colour
            elif n == 48 and colour is not None:
                bg = colour
            i = nxt
            continue
        # 5/6 blink, 25, 53/55 overline, 59 and anything unknown: ignored
        i += 1
    return Style(fg, bg, flags)


def parse(text: str, cols: int | None = None, rows: int | None = None) -> Screen:
    """Parse captured terminal text into a cell grid. SGR state carries across lines, as tmux
    only emits changes. Characters past `cols` are dropped; lines past `rows` too."""
    if text.endswith("\n"):
        text = text[:-1]
    lines_cells: list[list[Cell]] = [[]]
    style = DEFAULT_STYLE
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\x1b":
            if i + 1 < n and text[i + 1] == "[":
                j = i + 2
                while j < n and not ("\x40" <= text[j] <= "\x7e"):
                    j += 1
                if j < n and text[j] == "m":
                    body = text[i + 2:j]
                    if not body or body[0] not in "<=>?":
                        style = apply_sgr(style, body)
                i = j + 1
            elif i + 1 < n and text[i + 1] in "]P_^X":  # OSC/DCS/...: up to BEL or ST
                j = i + 2
                while j < n and text[j] != "\x07" and not (text[j] == "\x1b" and j + 1 < n and text[j + 1] == "\\"):
                    j += 1
                i = j + (1 if j < n and text[j] == "\x07" else 2)
            else:
                i += 2
            continue
        i += 1
        line = lines_cells[-1]
        if c == "\n":
            lines_cells.append([])
        elif c == "\r":
            pass  # capture-pane never emits bare CRs mid-line; treat CRLF as LF
        elif c == "\t":
            for _ in range(8 - len(line) % 8):
                line.append(Cell(" ", style))
        elif ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0:
            pass
        else:
            w = char_width(c)
            if w == 0:
                if line:
                    k = len(line) - 1
                    while k > 0 and line[k].cont:
                        k -= 1
                    line[k].ch += c
            elif w == 1:
                line.append(Cell(c, style))
            else:
                line.append(Cell(c, style, wide=True))
                line.append(Cell("", style, cont=True))
    if cols is None:
        cols = max((len(l) for l in lines_cells), default=0) or 1
    if rows is None:
        rows = len(lines_cells)
    screen = Screen.blank(cols, rows)
    for y, line in enumerate(lines_cells[:rows]):
        for x, cell in enumerate(line[:cols]):
            if cell.wide and x + 1 >= cols:
                cell = Cell(" ", cell.style)
            screen.grid[y][x] = cell
    return screen


# ----------------------------------------------------------------------------------------------
# Shapes: box drawing, blocks, braille (drawn on a 4x supersampled mask, then reduced)

SS = 4  # supersampling factor for shapes

# char -> (up, right, down, left); 1 light, 2 heavy, 3 double
_BOX = {}


def _box(chars: str, *arms):
    for ch, a in zip(chars, arms):
        _BOX[ch] = a


_box("─━│┃", (0, 1, 0, 1), (0, 2, 0, 2), (1, 0, 1, 0), (2, 0, 2, 0))
_box("┌┏┐┓└┗┘┛", (0, 1, 1, 0), (0, 2, 2, 0), (0, 0, 1, 1), (0, 0, 2, 2),
     (1, 1, 0, 0), (2, 2, 0, 0), (1, 0, 0, 1), (2, 0, 0, 2))
_box("├┣┤┫┬┳┴┻┼╋", (1, 1, 1, 0), (2, 2, 2, 0), (1, 0, 1, 1), (2, 0, 2, 2), (0, 1, 1, 1),
     (0, 2, 2, 2), (1, 1, 0, 1), (2, 2, 0, 2), (1, 1, 1, 1), (2, 2, 2, 2))
_box("═║╔╗╚╝╠╣╦╩╬", (0, 3, 0, 3), (3, 0, 3, 0), (0, 3, 3, 0), (0, 0, 3, 3), (3, 3, 0, 0),
     (3, 0, 0, 3), (3, 3, 3, 0), (3, 0, 3, 3), (0, 3, 3, 3), (3, 3, 0, 3), (3, 3, 3, 3))
_box("╴╵╶╷╸╹╺╻", (0, 0, 0, 1), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 2),
     (2, 0, 0, 0), (0, 2, 0, 0), (0, 0, 2, 0))
_box("╼╽╾╿", (0, 2, 0, 1), (1, 0, 2, 0), (0, 1, 0, 2), (2, 0, 1, 0))
# dashed lines are drawn solid: at terminal sizes the dashes are barely visible anyway
_box("┄┅┈┉╌╍", (0, 1, 0, 1), (0, 2, 0, 2), (0, 1, 0, 1), (0, 2, 0, 2), (0, 1, 0, 1), (0, 2, 0, 2))
_box("┆┇┊┋╎╏", (1, 0, 1, 0), (2, 0, 2, 0), (1, 0, 1, 0), (2, 0, 2, 0), (1, 0, 1, 0), (2, 0, 2, 0))
_ROUNDED = {"╭": (0, 1, 1, 0), "╮": (0, 0, 1, 1), "╯": (1, 0, 0, 1), "╰": (1, 1, 0, 0)}


def is_shape(ch: str) -> bool:
    o = ord(ch) if len(ch) == 1 else -1
    return ch in _BOX or ch in _ROUNDED or 0x2580 <= o <= 0x259F or 0x2800 <= o <= 0x28FF


class ShapeCache:
    def __init__(self, cw: int, ch: int):
        self.cw, self.ch = cw, ch
        self.light = max(1, round(cw / 9))  # line thickness in output pixels
        self.heavy = 2 * self.light
        self.cache = {}

    def mask(self, c: str):
        """An 'L' mask (cw x ch) whose opacity is the shape's coverage, or None."""
        if c not in self.cache:
            self.cache[c] = self._render(c)
        return self.cache[c]

    def _render(self, c: str):
        from PIL import Image, ImageDraw

        img = Image.new("L", (self.cw * SS, self.ch * SS), 0)
        d = ImageDraw.Draw(img)
        o = ord(c)

        def rect(x0, y0, x1, y1, v=255):
            """Fill output-pixel rectangle [x0, x1) x [y0, y1): whole pixels stay crisp."""
            if x1 > x0 and y1 > y0:
                d.rectangle([x0 * SS, y0 * SS, x1 * SS - 1, y1 * SS - 1], fill=v)

        if c in _ROUNDED:
            self._rounded(d, rect, _ROUNDED[c])
        elif c in _BOX:
            up, right, down, left = _BOX[c]
            if 3 in (up, right, down, left):
                self._double(rect, up, right, down, left)
            else:
                self._lines(rect, up, right, down, left)
        elif 0x2580 <= o <= 0x259F:
            self._block(rect, o)
        else:
            self._braille(d, o - 0x2800)
        return img.resize((self.cw, self.ch), Image.BOX)

    def _thick(self, weight):
        return self.heavy if weight == 2 else self.light

    def _lines(self, rect, up, right, down, left):
        W, H = self.cw, self.ch
        cx, cy = W // 2, H // 2  # centre pixel
        centre = max(self._thick(a) for a in (up, right, down, left) if a)
        c0 = centre // 2  # the centre square is [cx - c0, cx - c0 + centre)
        if right:
            t = self._thick(right)
            rect(cx - c0, cy - t // 2, W, cy - t // 2 + t)
        if left:
            t = self._thick(left)
            rect(0, cy - t // 2, cx - c0 + centre, cy - t // 2 + t)
        if down:
            t = self._thick(down)
            rect(cx - t // 2, cy - c0, cx - t // 2 + t, H)
        if up:
            t = self._thick(up)
            rect(cx - t // 2, 0, cx - t // 2 + t, cy - c0 + centre)

    def _rounded(self, d, rect, arms):
        up, right, down, left = arms
        W, H = self.cw, self.ch
        cx, cy, t = W // 2, H // 2, self.light
        r = max(1, min(W, H) // 2 - 1)
        # straight parts from the cell edges up to r from the centre, then a quarter arc
        ax = cx + (r if right else -r)
        ay = cy + (r if down else -r)
        if right:
            rect(ax, cy - t // 2, W, cy - t // 2 + t)
        else:
            rect(0, cy - t // 2, ax + 1, cy - t // 2 + t)
        if down:
            rect(cx - t // 2, ay, cx - t // 2 + t, H)
        else:
            rect(cx - t // 2, 0, cx - t // 2 + t, ay + 1)
        # quarter circle through the centre lines of both arms, supersampled for anti-aliasing
        lc = (cx - t // 2) * SS + t * SS / 2  # centre line of the arms, x (and y, shifted)
        ax_c = lc + (r if right else -r) * SS
        ay_c = (cy - cx) * SS + lc + (r if down else -r) * SS
        R, w = r * SS, t * SS
        bbox = [round(ax_c - R - w / 2), round(ay_c - R - w / 2),
                round(ax_c + R + w / 2) - 1, round(ay_c + R + w / 2) - 1]
        start = {(1, 1): 180, (1, 0): 270, (0, 0): 0, (0, 1): 90}[(down, right)]
        d.arc(bbox, start, start + 90, fill=255, width=w)

    def _double(self, rect, up, right, down, left):
        W, H = self.cw, self.ch
        cx, cy, t = W // 2, H // 2, self.light
        g = max(2, t * 2)  # the two lines sit at centre - g and centre + g
        u, r, dn, l = (a == 3 for a in (up, right, down, left))
        # each double arm is two parallel lines; where they meet a crossing arm they stop at
        # its near or far line, which gives the usual ╔ ╬ ╠ joins
        if r:
            rect(cx + g if u else (cx - g if dn else cx), cy - g, W, cy - g + t)
            rect(cx + g if dn else (cx - g if u else cx), cy + g, W, cy + g + t)
        if l:
            rect(0, cy - g, (cx - g if u else (cx + g if dn else cx)) + t, cy - g + t)
            rect(0, cy + g, (cx - g if dn else (cx + g if u else cx)) + t, cy + g + t)
        if dn:
            rect(cx - g, cy + g if l else (cy - g if r else cy), cx - g + t, H)
            rect(cx + g, cy + g if r else (cy - g if l else cy), cx + g + t, H)
        if u:
            rect(cx - g, 0, cx - g + t, (cy - g if l else (cy + g if r else cy)) + t)
            rect(cx + g, 0, cx + g + t, (cy - g if r else (cy + g if l else cy)) + t)

    def _block(self, rect, o):
        W, H = self.cw, self.ch
        hx, hy = W // 2, H // 2
        if o == 0x2580:
            rect(0, 0, W, hy)
        elif 0x2581 <= o <= 0x2588:  # lower 1/8 .. full
            k = o - 0x2580
            rect(0, H - round(H * k / 8), W, H)
        elif 0x2589 <= o <= 0x258F:  # left 7/8 .. 1/8
            k = 8 - (o - 0x2588)
            rect(0, 0, round(W * k / 8), H)
        elif o == 0x2590:
            rect(hx, 0, W, H)
        elif 0x2591 <= o <= 0x2593:  # light/medium/dark shade: uniform coverage
            rect(0, 0, W, H, v=(64, 128, 191)[o - 0x2591])
        elif o == 0x2594:
            rect(0, 0, W, max(1, round(H / 8)))
        elif o == 0x2595:
            rect(W - max(1, round(W / 8)), 0, W, H)
        else:  # quadrants 2596-259F: bits UL, UR, LL, LR
            quads = {0x2596: "0010", 0x2597: "0001", 0x2598: "1000", 0x2599: "1011",
                     0x259A: "1001", 0x259B: "1110", 0x259C: "1101", 0x259D: "0100",
                     0x259E: "0110", 0x259F: "0111"}[o]
            boxes = [(0, 0, hx, hy), (hx, 0, W, hy), (0, hy, hx, H), (hx, hy, W, H)]
            for bit, b in zip(quads, boxes):
                if bit == "1":
                    rect(*b)

    def _braille(self, d, bits):
        W, H = self.cw * SS, self.ch * SS
        # dot order: 1 2 3 down the left column, 4 5 6 down the right, then 7 (left) 8 (right)
        pos = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (0, 3), (1, 3)]
        rad = max(SS, min(W // 4, H // 8) * 3 // 5)
        for k, (col, row) in enumerate(pos):
            if bits & (1 << k):
                x = W * (2 * col + 1) // 4
                y = H * (2 * row + 1) // 8
                d.ellipse([x - rad, y - rad, x + rad, y + rad], fill=255)


# ----------------------------------------------------------------------------------------------
# Rendering


class Renderer:
    def __init__(self, font_size: int = 16, margin: int = 14, title: str | None = None):
        from PIL import ImageFont

        self.ImageFont = ImageFont
        self.fonts = {}
        if not os.path.exists(os.path.join(FONT_DIR, FONT_FILES[(False, False)])):
            raise SystemExit(f"DejaVu Sans Mono not found in {FONT_DIR} (apt-get install "
                             "fonts-dejavu-core, or set ANSI_PNG_FONT_DIR)")
        for key, name in FONT_FILES.items():
            path = os.path.join(FONT_DIR, name)
            if not os.path.exists(path):  # oblique faces are optional: fall back upright
                path = os.path.join(FONT_DIR, FONT_FILES[(key[0], False)])
            self.fonts[key] = ImageFont.truetype(path, font_size)
        self.fallback = {}
        for bold, name in FALLBACK_FONT_FILES.items():
            path = os.path.join(FONT_DIR, name)
            if os.path.exists(path):
                self.fallback[bold] = ImageFont.truetype(path, font_size)
        regular = self.fonts[(False, False)]
        ascent, descent = regular.getmetrics()
        self.cw = max(1, round(regular.getlength("M")))
        self.ch = ascent + descent
        self.baseline = ascent
        self.font_size = font_size
        self.margin = margin
        self.title = title
        self.shapes = ShapeCache(self.cw, self.ch)
        self._missing = {}
        self._has = {}

    # glyph coverage: FreeType draws .notdef (a box) for missing characters; compare with it
    def _has_glyph(self, font, c: str) -> bool:
        key = (id(font), c)
        if key not in self._has:
            fid = id(font)
            if fid not in self._missing:
                m = font.getmask("\U0010FFFD")
                self._missing[fid] = (m.size, bytes(m))
            m = font.getmask(c)
            self._has[key] = (m.size, bytes(m)) != self._missing[fid] or c.isspace()
        return self._has[key]

    def _font_for(self, c: str, bold: bool, italic: bool):
        f = self.fonts[(bold, italic)]
        base = c[0]
        if self._has_glyph(f, base):
            return f
        fb = self.fallback.get(bold)
        if fb is not None and self._has_glyph(fb, base):
            return fb
        return f

    def resolve(self, style: Style):
        """(fg, bg) RGB after reverse, dim and hidden."""
        def rgb(c, default):
            if c is None:
                return default
            if isinstance(c, int):
                return xterm256(c)
            return c

        fg = rgb(style.fg, THEME_FG)
        bg = rgb(style.bg, THEME_BG)
        if style.flags & REVERSE:
            fg, bg = bg, fg
        if style.flags & DIM:
            fg = tuple(round(f * 0.55 + b * 0.45) for f, b in zip(fg, bg))
        if style.flags & HIDDEN:
            fg = bg
        return fg, bg

    def title_height(self) -> int:
        return round(self.ch * 1.9) if self.title is not None else 0

    def origin(self):
        return self.margin, self.margin + self.title_height()

    def render(self, screen: Screen):
        """Draw the screen (and the title bar, if any) to a new RGB image."""
        from PIL import Image, ImageDraw

        ox, oy = self.origin()
        width = ox * 2 + screen.cols * self.cw
        height = oy + self.margin + screen.rows * self.ch
        img = Image.new("RGB", (width, height), THEME_BG)
        d = ImageDraw.Draw(img)
        if self.title is not None:
            self._titlebar(img, d, width)

        cells = []
        for y, row in enumerate(screen.grid):
            for x, cell in enumerate(row):
                if cell.cont:
                    continue
                fg, bg = self.resolve(cell.style)
                if screen.cursor == (x, y):
                    fg, bg = bg, THEME_CURSOR
                span = 2 if cell.wide else 1
                px, py = ox + x * self.cw, oy + y * self.ch
                if bg != THEME_BG:
                    d.rectangle([px, py, px + span * self.cw - 1, py + self.ch - 1], fill=bg)
                cells.append((px, py, span, cell, fg))

        for px, py, span, cell, fg in cells:
            c = cell.ch
            flags = cell.style.flags
            if c and c != " " and not (flags & HIDDEN):
                if len(c) == 1 and is_shape(c):
                    img.paste(fg, (px, py, px + self.cw, py + self.ch), self.shapes.mask(c))
                else:
                    font = self._font_for(c, bool(flags & BOLD), bool(flags & ITALIC))
                    d.text((px + (span * self.cw) / 2, py + self.baseline), c, font=font,
                           fill=fg, anchor="ms")
            if flags & UNDERLINE:
                uy = py + self.baseline + max(1, self.ch // 10)
                uy = min(uy, py + self.ch - 1)
                d.rectangle([px, uy, px + span * self.cw - 1, uy + max(0, self.shapes.light - 1)], fill=fg)
            if flags & STRIKE:
                sy = py + self.baseline - round(self.font_size * 0.3)
                d.rectangle([px, sy, px + span * self.cw - 1, sy + max(0, self.shapes.light - 1)], fill=fg)
        return img

    def _titlebar(self, img, d, width):
        h = self.title_height()
        d.rectangle([0, 0, width - 1, h - 1], fill=THEME_TITLEBAR)
        r = max(4, round(self.ch * 0.3))
        cy = h // 2
        for k, colour in enumerate(((0xFF, 0x5F, 0x57), (0xFE, 0xBC, 0x2E), (0x28, 0xC8, 0x40))):
            cx = self.margin + r + k * (3 * r)
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        font = self.fonts[(False, False)]
        d.text((width / 2, cy), self.title, font=font, fill=(0x9D, 0xA5, 0xB4), anchor="mm")


def render_text(text: str, out: str, cols=None, rows=None, font_size=16, margin=14, title=None):
    screen = parse(text, cols, rows)
    Renderer(font_size, margin, title).render(screen).save(out, optimize=True)
    return screen


# ----------------------------------------------------------------------------------------------
# tmux: capture every pane of a window and compose them with borders

_BORDER_CHARS = {
    (0, 1, 0, 1): "─", (1, 0, 1, 0): "│", (0, 1, 1, 0): "┌", (0, 0, 1, 1): "┐",
    (1, 1, 0, 0): "└", (1, 0, 0, 1): "┘", (1, 1, 1, 0): "├", (1, 0, 1, 1): "┤",
    (0, 1, 1, 1): "┬", (1, 1, 0, 1): "┴", (1, 1, 1, 1): "┼",
    (0, 1, 0, 0): "─", (0, 0, 0, 1): "─", (1, 0, 0, 0): "│", (0, 0, 1, 0): "│",
}


def tmux_cmd(socket, *args) -> str:
    if socket:
        args = ("-S" if "/" in socket else "-L", socket) + args
    cmd = ["tmux"] + list(args)
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def compose_tmux(target: str, socket: str | None = None, cursor: bool = True):
    """Capture all panes of a tmux window; returns (Screen, border texts)."""
    sep = "\x1f"
    fields = ["pane_id", "pane_left", "pane_top", "pane_width", "pane_height", "pane_active",
              "cursor_flag", "cursor_x", "cursor_y", "pane_title"]
    fmt = sep.join("#{%s}" % f for f in fields)
    size = tmux_cmd(socket, "display-message", "-p", "-t", target, "#{window_width} #{window_height}")
    cols, rows = (int(v) for v in size.split())
    border_status = tmux_cmd(socket, "show-options", "-wqv", "-t", target, "pane-border-status").strip() or "off"
    panes = []
    for line in tmux_cmd(socket, "list-panes", "-t", target, "-F", fmt).splitlines():
        p = dict(zip(fields, line.split(sep)))
        for k in fields[1:-1]:
            p[k] = int(p[k])
        p["text"] = tmux_cmd(socket, "capture-pane", "-e", "-p", "-N", "-t", p["pane_id"])
        panes.append(p)
    return compose(cols, rows, panes, border_status, cursor)


def compose(cols, rows, panes, border_status="off", cursor=True):
    """Lay captured panes (dicts with pane_left/top/width/height, text, ...) on one screen."""
    screen = Screen.blank(cols, rows)
    covered = [[False] * cols for _ in range(rows)]
    for p in panes:
        sub = parse(p["text"], p["pane_width"], p["pane_height"])
        for y in range(p["pane_height"]):
            for x in range(p["pane_width"]):
                X, Y = p["pane_left"] + x, p["pane_top"] + y
                if X < cols and Y < rows:
                    screen.grid[Y][X] = sub.grid[y][x]
                    covered[Y][X] = True
        if cursor and p.get("pane_active") and p.get("cursor_flag"):
            screen.cursor = (p["pane_left"] + p["cursor_x"], p["pane_top"] + p["cursor_y"])
    # borders: every cell no pane covers, joined to its bordering neighbours (within the
    # window; a title line at the window's top or bottom edge has no outward arms)
    border_style = Style(fg=THEME_BORDER)
    if not all(all(row) for row in covered):
        def is_border(x, y):
            return 0 <= x < cols and 0 <= y < rows and not covered[y][x]

        for y in range(rows):
            for x in range(cols):
                if covered[y][x]:
                    continue
                arms = (is_border(x, y - 1), is_border(x + 1, y), is_border(x, y + 1), is_border(x - 1, y))
                ch = _BORDER_CHARS.get(tuple(int(a) for a in arms), " ")
                screen.grid[y][x] = Cell(ch, border_style)
        if border_status in ("top", "bottom"):
            for p in panes:
                title = p.get("pane_title", "")
                if not title:
                    continue
                y = p["pane_top"] - 1 if border_status == "top" else p["pane_top"] + p["pane_height"]
                if not (0 <= y < rows):
                    continue
                active = bool(p.get("pane_active"))
                style = Style(fg=2 if active else 7, flags=BOLD if active else 0)
                label = f" {title} "
                x0 = p["pane_left"] + 2
                for k, c in enumerate(label[: max(0, p["pane_width"] - 4)]):
                    if x0 + k < cols:
                        screen.grid[y][x0 + k] = Cell(c, style)
    return screen


# ----------------------------------------------------------------------------------------------
# Self-test


def selftest(out_dir: str = "/tmp") -> int:
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    E = "\x1b["
    # parser checks
    s = apply_sgr(DEFAULT_STYLE, "1;2;3;4;7;31;42")
    check(s == Style(1, 2, BOLD | DIM | ITALIC | UNDERLINE | REVERSE), f"sgr combo {s}")
    check(apply_sgr(s, "") == DEFAULT_STYLE, "empty SGR resets")
    check(apply_sgr(s, "22;23;24;27;39;49") == DEFAULT_STYLE, "individual resets")
    check(apply_sgr(DEFAULT_STYLE, "38;5;196;48;2;1;2;3") == Style(196, (1, 2, 3), 0), "256/rgb")
    check(apply_sgr(DEFAULT_STYLE, "38:2::10:20:30;4:0") == Style((10, 20, 30), None, 0), "colon forms")
    check(apply_sgr(DEFAULT_STYLE, "95;103") == Style(13, 11, 0), "bright 90-97/100-107")
    check(xterm256(196) == (255, 0, 0) and xterm256(232) == (8, 8, 8) and xterm256(21) == (0, 0, 255),
          "xterm256")
    sc = parse(f"{E}31mab\ncd{E}0m\n漢x\ne\u0301|\x1b]8;;http://x\x1b\\L\x1b]8;;\x1b\\\n", cols=6)
    check(sc.grid[1][0].style.fg == 1, "SGR state carries across lines")
    check(sc.grid[2][0].wide and sc.grid[2][1].cont and sc.grid[2][2].ch == "x", "wide char takes 2 cells")
    check(sc.grid[3][0].ch == "e\u0301" and sc.grid[3][1].ch == "|", "combining joins previous cell")
    check(sc.grid[3][2].ch == "L", "OSC 8 hyperlinks skipped")
    check((sc.cols, sc.rows) == (6, 4), f"grid size {(sc.cols, sc.rows)}")
    inferred = parse("abc\nabcdef\n")
    check((inferred.cols, inferred.rows) == (6, 2), "inferred size")

    # a sample with every style, rendered
    FB = "\u2588"  # full block: fills the cell with the foreground colour
    lines = [
        f"{E}0mplain {E}1mbold{E}22m {E}2mdim{E}22m {E}3mitalic{E}23m {E}4munderline{E}24m "
        f"{E}7mreverse{E}27m {E}9mstrike{E}29m {E}8mhidden{E}28m end",
        "".join(f"{E}{30 + i}m{FB}" for i in range(8)) + f"{E}39m "
        + "".join(f"{E}{90 + i}m{FB}" for i in range(8)) + f"{E}39m",
        "".join(f"{E}{40 + i}m " for i in range(8)) + f"{E}49m "
        + "".join(f"{E}{100 + i}m " for i in range(8)) + f"{E}49m",
        f"{E}38;5;196m{FB}{E}38;5;46m{FB}{E}38;5;244m{FB}{E}48;5;21m {E}0m "
        f"{E}38;2;255;128;0m{FB}{E}48;2;10;20;30m {E}0m {E}32;7m{FB}x{E}0m {E}2;38;2;200;200;200m{FB}{E}0m",
        "┌──┬──┐ ╭──╮ ╔══╦═╗ ┏━━┓ ▀▄▌▐░▒▓ ▁▂▃▄▅▆▇█ ⣿⠁⢀ 漢字|x é",
        "└──┴──┘ ╰──╯ ╚══╩═╝ ┗━━┛ " + f"{E}1mBold{E}0m {E}1;3mBoldItalic{E}0m " + f"{E}4;31mred-ul{E}0m",
    ]
    text = "\n".join(lines) + "\n"
    path = os.path.join(out_dir, "ansi_png_selftest.png")
    r = Renderer(font_size=16, margin=14, title="selftest")
    screen = parse(text, cols=80, rows=len(lines))
    img = r.render(screen)
    img.save(path)
    img2 = r.render(parse(text, cols=80, rows=len(lines)))
    check(img.tobytes() == img2.tobytes(), "deterministic rendering")
    ox, oy = r.origin()

    def centre(x, y):
        return img.getpixel((ox + x * r.cw + r.cw // 2, oy + y * r.ch + r.ch // 2))

    def px(x, y, dx, dy):
        return img.getpixel((ox + x * r.cw + dx, oy + y * r.ch + dy))

    check(img.getpixel((1, img.height - 2)) == THEME_BG, "margin is theme background")
    for i in range(8):
        check(centre(i, 1) == PALETTE16[i], f"fg {30 + i}: {centre(i, 1)}")
        check(centre(9 + i, 1) == PALETTE16[8 + i], f"fg {90 + i}")
        check(centre(i, 2) == PALETTE16[i], f"bg {40 + i}")
        check(centre(9 + i, 2) == PALETTE16[8 + i], f"bg {100 + i}")
    check(centre(0, 3) == (255, 0, 0), "38;5;196")
    check(centre(1, 3) == xterm256(46), "38;5;46")
    check(centre(2, 3) == xterm256(244), "38;5;244 grey")
    check(centre(3, 3) == (0, 0, 255), "48;5;21")
    check(centre(5, 3) == (255, 128, 0), "38;2 truecolour fg")
    check(centre(6, 3) == (10, 20, 30), "48;2 truecolour bg")
    check(centre(8, 3) == THEME_BG, "reverse of a full block shows the default background")
    check(px(9, 3, 0, 0) == PALETTE16[2], "reverse: green background behind x")
    dim = tuple(round(200 * 0.55 + b * 0.45) for b in THEME_BG)
    check(centre(11, 3) == dim, f"dim blends toward background: {centre(11, 3)} != {dim}")
    # 'reverse' at column 36..42 of line 0: background is the default foreground colour
    plain = screen.text().splitlines()
    col = lambda y, word: plain[y].index(word)  # noqa: E731
    check(px(col(0, "reverse"), 0, 0, 0) == THEME_FG, "reverse: default fg becomes the background")
    uy = min(r.baseline + max(1, r.ch // 10), r.ch - 1)
    check(px(col(0, "underline"), 0, r.cw // 2, uy) == THEME_FG, "underline drawn")
    check(px(col(0, "underline"), 0, r.cw // 2, 1) == THEME_BG, "underline cell top is background")
    check(px(col(5, "red-ul"), 5, r.cw // 2, uy) == PALETTE16[1], "underline in the text colour")
    hx = col(0, "end") - 7  # 'hidden' occupies the 6 cells before ' end'
    check(all(px(x, 0, dx, dy) == THEME_BG for x in range(hx, hx + 6) for dx in range(r.cw)
              for dy in range(r.ch)), "hidden text has no ink")
    sx = col(0, "strike")
    check(any(px(sx + 2, 0, dx, dy) == THEME_FG for dx in range(r.cw) for dy in range(r.ch)) and
          all(px(sx + 2, 0, dx, r.baseline - round(r.font_size * 0.3)) == THEME_FG for dx in range(r.cw)),
          "strikethrough line crosses the cell")
    # box drawing: lines reach the cell edges, so neighbours join without gaps
    cy, cx = r.ch // 2, r.cw // 2
    check(px(1, 4, 0, cy) == THEME_FG and px(1, 4, r.cw - 1, cy) == THEME_FG, "─ spans the cell")
    check(px(0, 4, cx, r.ch - 1) == THEME_FG and px(0, 5, cx, 0) == THEME_FG, "┌ above └ join")
    check(px(0, 4, 0, cy) == THEME_BG and px(0, 4, cx, 0) == THEME_BG, "┌ has no left/up arm")
    k = col(4, "╭")
    check(px(k, 4, r.cw - 1, cy) == THEME_FG and px(k, 4, cx, r.ch - 1) == THEME_FG
          and px(k, 4, 0, 0) == THEME_BG, "╭ rounded corner")
    k = col(4, "═")
    check(px(k, 4, cx, cy) == THEME_BG and px(k, 4, cx, cy - 2) == THEME_FG
          and px(k, 4, cx, cy + 2) == THEME_FG, "═ is two lines")
    k = col(4, "┏")
    check(px(k + 1, 4, cx, cy) == THEME_FG and px(k + 1, 4, cx, cy - 1) == THEME_FG
          and px(1, 4, cx, cy - 1) == THEME_BG, "━ is heavier than ─")
    # blocks
    k = col(4, "▀")
    check(px(k, 4, cx, 0) == THEME_FG and px(k, 4, cx, r.ch - 1) == THEME_BG, "▀ upper half")
    check(px(k + 1, 4, cx, 0) == THEME_BG and px(k + 1, 4, cx, r.ch - 1) == THEME_FG, "▄ lower half")
    check(px(k + 2, 4, 0, cy) == THEME_FG and px(k + 2, 4, r.cw - 1, cy) == THEME_BG, "▌ left half")
    shade = px(k + 5, 4, cx, cy)
    check(all(b < s_ < f for s_, b, f in zip(shade, THEME_BG, THEME_FG)), "▒ is a blend")
    k = col(4, "█")
    check(all(px(k, 4, dx, dy) == THEME_FG for dx in range(r.cw) for dy in range(r.ch)), "█ fills the cell")
    # wide characters: 漢字 take two cells each, so '|' and 'x' land 4 cells on
    k = col(4, "漢")
    check(screen.grid[4][k].wide and screen.grid[4][k + 1].cont and screen.grid[4][k + 4].ch == "|"
          and screen.grid[4][k + 5].ch == "x", f"wide chars in grid: {plain[4]!r}")
    check(sum(1 for dx in range(2 * r.cw) for dy in range(r.ch) if px(k, 4, dx, dy) != THEME_BG) > 20,
          "漢 is drawn (as the font's missing-glyph box without a CJK font)")

    # tmux composition: two panes under title lines, as `pane-border-status top` lays them out
    panes = [
        dict(pane_left=0, pane_top=1, pane_width=12, pane_height=2, pane_active=0, cursor_flag=1,
             cursor_x=0, cursor_y=0, pane_title="top", text="log 1\nlog 2\n"),
        dict(pane_left=0, pane_top=4, pane_width=12, pane_height=2, pane_active=1, cursor_flag=1,
             cursor_x=2, cursor_y=1, pane_title="sh", text=f"{E}32m$ {E}0mls\n$\n"),
    ]
    comp = compose(12, 6, panes, "top")
    check(comp.text().splitlines() == ["── top ─────", "log 1", "log 2", "── sh ──────", "$ ls", "$"],
          f"composed panes: {comp.text().splitlines()}")
    check(comp.grid[3][3].style.fg == 2 and comp.grid[0][3].style.fg == 7, "active pane's title in green")
    check(comp.cursor == (2, 5), "cursor of the active pane")
    check(comp.grid[4][0].style.fg == 2, "pane colours kept")
    cimg = Renderer(font_size=16, margin=0).render(comp)
    check(cimg.getpixel((2 * r.cw + 1, 5 * r.ch + 1)) == THEME_CURSOR, "cursor drawn as a block")

    # bold has more ink than regular for the same letters
    def ink(image, x0, y, n):
        return sum(1 for p in image.crop((ox + x0 * r.cw, oy + y * r.ch, ox + (x0 + n) * r.cw,
                                          oy + (y + 1) * r.ch)).getdata() if p != THEME_BG)

    bx = col(5, "Bold")
    check(ink(img, bx, 5, 4) > ink(r.render(parse(" " * bx + "Bold", cols=bx + 4)), bx, 0, 4),
          "bold is heavier than regular")
    if failures:
        for f in failures:
            print("FAIL:", f, file=sys.stderr)
        print(f"selftest: {len(failures)} failed; image at {path}", file=sys.stderr)
        return 1
    print(f"selftest: all checks passed; image at {path}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", help="captured text file, or - for stdin")
    ap.add_argument("-o", "--output", help="PNG to write")
    ap.add_argument("--cols", type=int)
    ap.add_argument("--rows", type=int)
    ap.add_argument("--tmux", metavar="TARGET", help="capture and compose all panes of this tmux window")
    ap.add_argument("--tmux-socket", metavar="SOCKET",
                    help="tmux server socket: a path (tmux -S) or a name (tmux -L)")
    ap.add_argument("--no-cursor", action="store_true", help="do not draw the active pane's cursor")
    ap.add_argument("--font-size", type=int, default=16)
    ap.add_argument("--margin", type=int, default=14)
    ap.add_argument("--title", help="draw a window title bar with this text")
    ap.add_argument("--save-capture", metavar="FILE", help="with --tmux: also write the composed plain text")
    ap.add_argument("--selftest", action="store_true")
    a = ap.parse_args(argv)
    if a.selftest:
        return selftest()
    if not a.output:
        ap.error("-o/--output is required")
    renderer = Renderer(a.font_size, a.margin, a.title)
    if a.tmux:
        screen = compose_tmux(a.tmux, a.tmux_socket, cursor=not a.no_cursor)
        if a.save_capture:
            with open(a.save_capture, "w", encoding="utf-8") as f:
                f.write(screen.text() + "\n")
    else:
        if not a.input:
            ap.error("give an INPUT file (or -), or --tmux TARGET")
        if a.input == "-":
            text = sys.stdin.read()
        else:
            with open(a.input, encoding="utf-8", errors="replace") as f:
                text = f.read()
        screen = parse(text, a.cols, a.rows)
    renderer.render(screen).save(a.output, optimize=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
