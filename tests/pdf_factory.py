"""PDFs written byte by byte for the tests: with a real text layer (Pillow's PDFs are pictures
only), encrypted, and broken. Objects are numbered in order; PDFium rebuilds the cross-reference
table of the encrypted one, whose offsets are left stale on purpose."""

from __future__ import annotations

import io


def text_pdf(pages: list[str]) -> bytes:
    """One line of Helvetica text per page."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        stream = f"BT /F1 24 Tf 72 700 Td ({text}) Tj ET"
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        objects.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {len(objects)} 0 R >>"
        )
        kids.append(len(objects))
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n{body}\nendobj\n".encode())
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write("".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def encrypted_pdf() -> bytes:
    """A PDF under the standard security handler whose empty user password does not open it."""
    data = text_pdf(["secret"])
    encrypt = b"9 0 obj\n<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >>\nendobj\n"
    file_id = b"<00112233445566778899aabbccddeeff>"
    data = data.replace(b"/Root 1 0 R >>", b"/Root 1 0 R /Encrypt 9 0 R /ID [" + file_id + b" " + file_id + b"] >>")
    at = data.index(b"xref")
    return data[:at] + encrypt + data[at:]


BROKEN_PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog"


def empty_pdf() -> bytes:
    """A well-formed PDF with no pages, as PDFium itself writes one."""
    import pypdfium2

    out = io.BytesIO()
    pypdfium2.PdfDocument.new().save(out)
    return out.getvalue()
