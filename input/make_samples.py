"""Regenerate the example files of every tab: `python input/make_samples.py`.

The examples are drawn, spoken and encoded here rather than downloaded, so their
licence is simply ours (CC0) and the app's examples work on a machine with no network.
Speech needs the `espeak-ng` program; everything else only needs the app's own packages.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
SAMPLE_RATE = 16_000
SPEECH = (
    "Welcome to Gemma Studio. This short recording is used to test speech recognition. "
    "The meeting starts at 3 pm on Tuesday, in room 12."
)
CLIP_SIZE = (320, 240)
CLIP_FPS = 12
CLIP_SECONDS = 4
TONE_HZ = 440.0
JPEG_QUALITY = 85


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def make_shapes(path: Path) -> None:
    """Plain shapes with plain names, so boxes and points are easy to check by eye."""
    image = Image.new("RGB", (640, 480), "#f2efe6")
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 80, 220, 240), fill="#d62828")  # red circle
    draw.rectangle((300, 60, 460, 220), fill="#1d4ed8")  # blue square
    draw.polygon([(120, 440), (200, 290), (280, 440)], fill="#2a9d4b")  # green triangle
    star = [
        (520 + r * math.sin(k * math.pi / 5), 350 - r * math.cos(k * math.pi / 5))
        for k, r in zip(range(10), [80, 32] * 5)
    ]
    draw.polygon(star, fill="#f4c20d")  # yellow star
    image.save(path, quality=JPEG_QUALITY)


def make_scene(path: Path) -> None:
    """A sunny landscape with a house and a tree: something to caption."""
    image = Image.new("RGB", (640, 427))
    draw = ImageDraw.Draw(image)
    for y in range(260):
        blend = y / 260
        draw.line((0, y, 640, y), fill=(int(90 + 110 * blend), int(160 + 60 * blend), 235))
    draw.ellipse((510, 40, 590, 120), fill="#ffd23f")
    draw.polygon([(0, 280), (150, 140), (300, 280)], fill="#6b7a8f")
    draw.polygon([(200, 280), (380, 110), (560, 280)], fill="#59677c")
    draw.polygon([(330, 150), (380, 110), (430, 150)], fill="#ffffff")
    draw.rectangle((0, 260, 640, 427), fill="#4caf50")
    draw.rectangle((120, 250, 280, 360), fill="#c0504d")
    draw.polygon([(105, 250), (200, 180), (295, 250)], fill="#7b3f00")
    draw.rectangle((180, 300, 220, 360), fill="#5d4037")
    draw.rectangle((135, 270, 170, 300), fill="#bde0fe")
    draw.rectangle((230, 270, 265, 300), fill="#bde0fe")
    draw.rectangle((450, 250, 470, 360), fill="#6d4c41")
    draw.ellipse((400, 170, 520, 290), fill="#2e7d32")
    image.save(path, quality=JPEG_QUALITY)


def make_document(path: Path) -> None:
    """A page with a heading, a bulleted list and a ruled table, for reading and Markdown."""
    image = Image.new("L", (800, 900), 255)
    draw = ImageDraw.Draw(image)
    draw.text((60, 50), "Quarterly Report", font=font(44), fill=0)
    draw.text((60, 120), "Prepared by the Operations Team, March 2025", font=font(22), fill=60)
    bullets = ("Sales grew by 12% over the quarter.", "Two new offices opened.", "Support tickets fell to 340.")
    for row, line in enumerate(bullets):
        y = 190 + row * 44
        draw.ellipse((66, y + 9, 78, y + 21), fill=0)
        draw.text((96, y), line, font=font(26), fill=0)
    draw.text((60, 350), "Results by region", font=font(32), fill=0)
    draw_table(draw, (60, 410), [("Region", "Revenue", "Growth"), ("North", "$1.2M", "8%"),
                                 ("South", "$0.9M", "15%"), ("West", "$1.5M", "11%")])
    draw.text((60, 720), "Next review: 14 July 2025.", font=font(24), fill=0)
    image.save(path, optimize=True)


def draw_table(draw: ImageDraw.ImageDraw, origin: tuple[int, int], rows: list[tuple[str, ...]]) -> None:
    left, top = origin
    column_width, row_height = 220, 56
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            x, y = left + c * column_width, top + r * row_height
            draw.rectangle((x, y, x + column_width, y + row_height), outline=0, width=2)
            draw.text((x + 16, y + 14), cell, font=font(26), fill=0)


QUARTERS = (("Q1", 1.1), ("Q2", 1.4), ("Q3", 1.3), ("Q4", 1.8))
REPORT_TEXT = (
    "Summary. Revenue rose in every quarter but the third, when the West office moved. "
    "The second quarter brought the largest new contract of the year. Staff grew from 48 "
    "to 61 people. The board approved two new offices for next year, in Lyon and in Porto."
)


def make_report_pdf(path: Path) -> None:
    """A 3-page PDF for the chat: a table, a chart and plain text. Pillow writes pages as
    pictures, so this PDF has no text layer: "text layer" on it finds nothing."""
    table = Image.new("L", (850, 1100), 255)
    draw = ImageDraw.Draw(table)
    draw.text((60, 60), "Annual Report 2025", font=font(48), fill=0)
    draw.text((60, 140), "Revenue by quarter", font=font(30), fill=0)
    draw_table(draw, (60, 200), [("Quarter", "Revenue", "Offices"),
                                 *((q, f"${value:.1f}M", str(3 + i)) for i, (q, value) in enumerate(QUARTERS))])
    chart = Image.new("L", (850, 1100), 255)
    draw = ImageDraw.Draw(chart)
    draw.text((60, 60), "Revenue by quarter ($M)", font=font(36), fill=0)
    draw.line((100, 700, 760, 700), fill=0, width=3)
    for i, (quarter, value) in enumerate(QUARTERS):
        left = 140 + i * 160
        draw.rectangle((left, 700 - value * 250, left + 100, 700), fill=90)
        draw.text((left + 30, 720), quarter, font=font(28), fill=0)
        draw.text((left + 20, 700 - value * 250 - 40), f"{value:.1f}", font=font(26), fill=0)
    text = Image.new("L", (850, 1100), 255)
    draw = ImageDraw.Draw(text)
    draw.text((60, 60), "Notes", font=font(40), fill=0)
    words, line, y = REPORT_TEXT.split(), "", 140
    for word in words:
        if len(line) + len(word) > 48:
            draw.text((60, y), line, font=font(28), fill=0)
            line, y = "", y + 44
        line = f"{line} {word}".strip()
    draw.text((60, y), line, font=font(28), fill=0)
    table.save(path, save_all=True, append_images=[chart, text], resolution=100)


# A 4-page service contract with a real text layer (Pillow's PDFs are pictures only), written
# object by object in Helvetica: headings, clauses, and a ruled fee table on page 2.
CONTRACT_PAGES = (
    [("h", "Service Agreement"), ("p", "Between Northwind Analytics Ltd (the Provider)"),
     ("p", "and Harbour Street Bakery (the Client), dated 3 March 2025."), ("h", "1. Services"),
     ("p", "The Provider keeps the Client's ordering system running and"),
     ("p", "answers support requests on working days, 9:00 to 17:00."),
     ("h", "2. Term"), ("p", "This agreement runs for twelve months from the date above"),
     ("p", "and renews for another twelve unless either party ends it.")],
    [("h", "3. Fees"), ("p", "The Client pays the following fees each month, plus VAT:"),
     ("t", [("Service", "Hours", "Monthly fee"), ("Hosting", "-", "120.00"), ("Support", "10", "450.00"),
            ("Backups", "-", "35.00"), ("Total", "", "605.00")]),
     ("p", "Invoices are due within 30 days of their date.")],
    [("h", "4. Confidentiality"), ("p", "Each party keeps the other's business information secret"),
     ("p", "during this agreement and for three years after it ends."), ("h", "5. Ending the agreement"),
     ("p", "Either party may end this agreement with 60 days' written notice."),
     ("p", "Fees for the notice period remain due.")],
    [("h", "6. Signatures"), ("p", "Signed for the Provider: Ada Moreau, Director"),
     ("p", "Signed for the Client: Tom Baker, Owner"), ("p", "Date: 3 March 2025")],
)


def make_contract_pdf(path: Path) -> None:
    """A 4-page contract whose text is a text layer, not a picture (for the document reader)."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold >>"]
    kids = []
    for page in CONTRACT_PAGES:
        stream = contract_page_stream(page)
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        objects.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       f"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {len(objects)} 0 R >>")
        kids.append(len(objects))
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))


def contract_page_stream(blocks: list) -> str:
    """PDF drawing operators for one page: text lines top-down, tables as ruled cells."""
    ops, y = [], 720
    for kind, content in blocks:
        if kind == "t":
            y -= 12
            for row_number, row in enumerate(content):
                for column, cell in enumerate(row):
                    x = 72 + column * 150
                    ops += [f"{x} {y - 8} 150 26 re S", pdf_text(x + 8, y, "F2" if row_number == 0 else "F1", 12, cell)]
                y -= 26
            y -= 20
            continue
        size, font_name, gap = (20, "F2", 34) if kind == "h" else (12, "F1", 20)
        ops.append(pdf_text(72, y, font_name, size, content))
        y -= gap
    return "\n".join(ops)


def pdf_text(x: int, y: int, font_name: str, size: int, text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f"BT /{font_name} {size} Tf {x} {y} Td ({escaped}) Tj ET"


def make_sketch(path: Path) -> None:
    """A hand-drawn-style wireframe of a sign-up page, for image to HTML."""
    image = Image.new("L", (800, 600), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 780, 90), outline=40, width=3)
    draw.text((40, 38), "TravelBuddy", font=font(30), fill=0)
    for index, link in enumerate(("Home", "Trips", "About")):
        draw.text((500 + index * 95, 42), link, font=font(24), fill=0)
    draw.rectangle((40, 130, 380, 420), outline=40, width=3)
    draw.line((40, 130, 380, 420), fill=120, width=2)
    draw.line((40, 420, 380, 130), fill=120, width=2)
    draw.text((420, 130), "Plan your next trip", font=font(30), fill=0)
    for index, label in enumerate(("Name", "Email")):
        y = 200 + index * 90
        draw.text((420, y), label, font=font(22), fill=0)
        draw.rectangle((420, y + 30, 760, y + 70), outline=40, width=2)
    draw.rounded_rectangle((420, 390, 600, 440), radius=12, outline=0, width=3)
    draw.text((458, 402), "Sign up", font=font(24), fill=0)
    draw.line((20, 520, 780, 520), fill=40, width=2)
    draw.text((40, 540), "(c) 2025 TravelBuddy - Contact - Privacy", font=font(20), fill=0)
    image.save(path, optimize=True)


def make_speech(path: Path) -> None:
    """espeak-ng writes 22.05 kHz; the model hears 16 kHz, so the file is stored at that rate."""
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), SPEECH], check=True)
        samples, rate = sf.read(raw, dtype="float32")
    sf.write(path, soxr.resample(samples, rate, SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")


def make_clip(path: Path) -> None:
    """A red ball crossing a blue square left to right, with a steady tone as its sound."""
    width, height = CLIP_SIZE
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=CLIP_FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "28", "preset": "veryslow", "threads": "1"}
        audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for index in range(CLIP_FPS * CLIP_SECONDS):
            frame = av.VideoFrame.from_image(clip_frame(index / (CLIP_FPS * CLIP_SECONDS - 1)))
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        write_tone(container, audio)


def clip_frame(progress: float) -> Image.Image:
    width, height = CLIP_SIZE
    image = Image.new("RGB", CLIP_SIZE, "#e8f1f8")
    draw = ImageDraw.Draw(image)
    draw.rectangle((130, 70, 190, 130), fill="#1d4ed8")
    x = 20 + progress * (width - 60)
    draw.ellipse((x, 150, x + 40, 190), fill="#d62828")
    draw.rectangle((0, height - 30, width, height), fill="#4caf50")
    return image


def write_tone(container: av.container.OutputContainer, stream: av.AudioStream) -> None:
    seconds = np.arange(SAMPLE_RATE * CLIP_SECONDS) / SAMPLE_RATE
    tone = (0.2 * np.sin(2 * np.pi * TONE_HZ * seconds)).astype(np.float32)
    block = 1024  # AAC frame size
    for start in range(0, len(tone), block):
        frame = av.AudioFrame.from_ndarray(tone[None, start : start + block], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def main() -> None:
    make_shapes(HERE / "shapes.jpg")
    make_scene(HERE / "scene.jpg")
    make_document(HERE / "document.png")
    make_sketch(HERE / "sketch.png")
    make_speech(HERE / "speech.wav")
    make_clip(HERE / "clip.mp4")
    make_report_pdf(HERE / "report.pdf")
    make_contract_pdf(HERE / "contract.pdf")


if __name__ == "__main__":
    main()
