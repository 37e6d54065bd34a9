"""The export's XLSX workbook, written as it streams.

A workbook is a zip of XML parts. The sheet is written row by row into a zip entry
that zipfile compresses on the fly; written to a stream it cannot seek, zipfile
puts each entry's sizes after its data (a data descriptor, as every streaming zip
writer does), so every ``export.CHUNK`` rows the bytes so far go to the client. What
depends on the number of rows (the autofilter's range) is written after the rows: it
follows them in the sheet's XML, and the workbook part that names it is written last.
The sheet's columns and their widths are ``export.COLUMNS``.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Iterator
from math import ceil
from xml.sax.saxutils import escape

from server.i18n import gettext as _
from server.ledger import export

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
_DAY = dt.timedelta(days=1)
# Positions in cellXfs of _styles(). The table's cells are bordered and top-aligned, its
# text wrapped within the column.
_DATE_STYLE, _DATETIME_STYLE, _TEXT_STYLE, _NUMBER_STYLE = 1, 2, 3, 4
_HEADER_STYLE, _TITLE_STYLE, _NOTE_STYLE = 5, 6, 7
_TITLE_HEIGHT = 30  # points: the title's font is larger
# Characters XML 1.0 does not allow (phones can send them; Excel would call the file damaged).
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_PLAIN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff&<>]")
_PAPER_A4 = 9


def _content_types() -> str:
    return (
        f"{_XML}<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">"
        '<Default Extension="rels"'
        ' ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/styles.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>'
    )


def _static_parts() -> dict[str, str]:
    return {
        "[Content_Types].xml": _content_types(),
        "_rels/.rels": (
            f'{_XML}<Relationships xmlns="{_PACKAGE_RELS}"><Relationship Id="rId1"'
            f' Type="{_RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'{_XML}<Relationships xmlns="{_PACKAGE_RELS}">'
            f'<Relationship Id="rId1" Type="{_RELS}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{_RELS}/styles" Target="styles.xml"/>'
            "</Relationships>"
        ),
        "xl/styles.xml": _styles(),
    }


def _workbook(sheet_name: str, header_row: int, last_row: int) -> str:
    """The workbook part: its one sheet, the autofilter's range and the print titles (the
    header row on every printed page)."""
    sheet = escape("'" + sheet_name.replace("'", "''") + "'")
    last_column = _COLUMN_LETTERS[-1]
    names = (
        f'<definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">'
        f"{sheet}!$A${header_row}:${last_column}${last_row}</definedName>"
        f'<definedName name="_xlnm.Print_Titles" localSheetId="0">'
        f"{sheet}!${header_row}:${header_row}</definedName>"
    )
    return (
        f'{_XML}<workbook xmlns="{_MAIN}" xmlns:r="{_RELS}"><sheets>'
        f'<sheet name="{escape(sheet_name, {chr(34): "&quot;"})}" sheetId="1" r:id="rId1"/>'
        f"</sheets><definedNames>{names}</definedNames></workbook>"
    )


def _styles() -> str:
    border = ' borderId="1" applyBorder="1"'
    top = '<alignment vertical="top"/>'
    return (
        f'{_XML}<styleSheet xmlns="{_MAIN}"><numFmts count="2">'
        '<numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
        '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm"/></numFmts>'
        '<fonts count="3"><font><sz val="11"/><name val="Calibri"/></font>'
        '<font><b/><sz val="11"/><name val="Calibri"/></font>'
        '<font><b/><sz val="16"/><name val="Calibri"/></font></fonts>'
        '<fills count="3"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill>'
        '<fill><patternFill patternType="solid"><fgColor rgb="FFD9E1F2"/>'
        '<bgColor indexed="64"/></patternFill></fill></fills>'
        '<borders count="2"><border><left/><right/><top/><bottom/><diagonal/></border>'
        '<border><left style="thin"><color auto="1"/></left><right style="thin">'
        '<color auto="1"/></right><top style="thin"><color auto="1"/></top>'
        '<bottom style="thin"><color auto="1"/></bottom><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        '</cellStyleXfs><cellXfs count="8">'
        '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        f'<xf numFmtId="164" fontId="0" fillId="0"{border} xfId="0" applyNumberFormat="1"'
        f' applyAlignment="1">{top}</xf>'
        f'<xf numFmtId="165" fontId="0" fillId="0"{border} xfId="0" applyNumberFormat="1"'
        f' applyAlignment="1">{top}</xf>'
        f'<xf numFmtId="0" fontId="0" fillId="0"{border} xfId="0" applyAlignment="1">'
        '<alignment vertical="top" wrapText="1"/></xf>'
        f'<xf numFmtId="0" fontId="0" fillId="0"{border} xfId="0" applyAlignment="1">'
        '<alignment horizontal="center" vertical="top"/></xf>'
        f'<xf numFmtId="0" fontId="1" fillId="2"{border} xfId="0" applyFont="1"'
        ' applyFill="1" applyAlignment="1">'
        '<alignment horizontal="center" vertical="center" wrapText="1"/></xf>'
        '<xf numFmtId="0" fontId="2" fillId="0" borderId="0" xfId="0" applyFont="1"'
        ' applyAlignment="1"><alignment horizontal="center" vertical="center"/></xf>'
        '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" applyAlignment="1">'
        '<alignment vertical="center"/></xf>'
        '</cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/>'
        "</cellStyles></styleSheet>"
    )


def _column_letters(index: int) -> str:
    """A, B, ... Z, AA, AB, ... for the 0-based column ``index``."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


_COLUMN_LETTERS = [_column_letters(index) for index in range(len(export.COLUMNS))]
_ROOM = [column.width - 0.5 for column in export.COLUMNS]  # less the cell's margins
_LINE_HEIGHT = 16  # points: a line of 11-point text in a Chinese font (Noto Sans CJK: 15.9)
_MAX_LINES = 25  # 400 points; Excel allows a row at most 409


def _sheet_start(heading_lines: list[str]) -> str:
    """The sheet's XML before its rows: fitted to the page, the rows above the first
    row of data frozen, the columns' widths; then the heading and the header row."""
    header_row = len(heading_lines) + 1
    first = f"A{header_row + 1}"
    cols = "".join(
        f'<col min="{n}" max="{n}" width="{column.width}" customWidth="1"/>'
        for n, column in enumerate(export.COLUMNS, start=1)
    )
    rows = []
    for number, line in enumerate(heading_lines, start=1):
        style = _TITLE_STYLE if number == 1 else _NOTE_STYLE
        height = f' ht="{_TITLE_HEIGHT}" customHeight="1"' if number == 1 else ""
        rows.append(f'<row r="{number}"{height}>{_cell(f"A{number}", line, style)}</row>')
    rows.append(_row(header_row, export.headers(), _HEADER_STYLE))
    return (
        f'{_XML}<worksheet xmlns="{_MAIN}" xmlns:r="{_RELS}">'
        '<sheetPr><pageSetUpPr fitToPage="1"/></sheetPr>'
        '<sheetViews><sheetView workbookViewId="0">'
        f'<pane ySplit="{header_row}" topLeftCell="{first}" activePane="bottomLeft"'
        ' state="frozen"/>'
        f'<selection pane="bottomLeft" activeCell="{first}" sqref="{first}"/>'
        "</sheetView></sheetViews>"
        f'<sheetFormatPr defaultRowHeight="{_LINE_HEIGHT}"/><cols>{cols}</cols><sheetData>'
        + "".join(rows)
    )


def _sheet_end(header_row: int, last_row: int) -> str:
    """The sheet's XML after its rows: the autofilter over the header and the rows, the
    title merged across the table, and the page: A4 landscape, as many pages high as it
    takes at the scale that fits the width, page numbers in the footer."""
    last_column = _COLUMN_LETTERS[-1]
    merged = (f'<mergeCells count="1"><mergeCell ref="A1:{last_column}1"/></mergeCells>'
              if header_row > 1 else "")
    footer = escape("&C" + _("export.page_footer"))
    return (
        f'</sheetData><autoFilter ref="A{header_row}:{last_column}{last_row}"/>{merged}'
        '<printOptions horizontalCentered="1"/>'
        '<pageMargins left="0.3" right="0.3" top="0.5" bottom="0.5" header="0.2"'
        ' footer="0.2"/>'
        f'<pageSetup paperSize="{_PAPER_A4}" orientation="landscape" fitToWidth="1"'
        ' fitToHeight="0"/>'
        f"<headerFooter><oddFooter>{footer}</oddFooter></headerFooter></worksheet>"
    )


def _cell(ref: str, value, text_style: int = _TEXT_STYLE) -> str:
    """One cell of the sheet's XML at ``ref`` (A1); an empty one keeps its style (the
    table's borders)."""
    if value is None or value == "":
        return f'<c r="{ref}" s="{text_style}"/>'
    if isinstance(value, str):
        return _text_cell(ref, value, text_style)
    if isinstance(value, dt.datetime):
        days = (value - _EXCEL_EPOCH) / _DAY
        return f'<c r="{ref}" s="{_DATETIME_STYLE}"><v>{days!r}</v></c>'
    if isinstance(value, dt.date):
        days = (value - _EXCEL_EPOCH.date()).days
        return f'<c r="{ref}" s="{_DATE_STYLE}"><v>{days}</v></c>'
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<c r="{ref}" s="{_NUMBER_STYLE}"><v>{value!r}</v></c>'
    return _text_cell(ref, str(value), text_style)


def _text_cell(ref: str, text: str, style: int) -> str:
    if _NOT_PLAIN.search(text):
        text = escape(_ILLEGAL_XML.sub("", text))
    # Without xml:space="preserve" leading and trailing spaces would be dropped.
    if text and (text[0].isspace() or text[-1].isspace()):
        return (f'<c r="{ref}" s="{style}" t="inlineStr"><is><t xml:space="preserve">{text}'
                "</t></is></c>")
    return f'<c r="{ref}" s="{style}" t="inlineStr"><is><t>{text}</t></is></c>'


def _lines(text: str, room: float) -> int:
    """About how many lines ``text`` takes wrapped in ``room`` width units: a Chinese
    character (three bytes in UTF-8) counts two units, anything else one."""
    if "\n" not in text:
        return ceil((len(text) + len(text.encode())) / 2 / room)
    return sum(max(1, ceil((len(part) + len(part.encode())) / 2 / room))
               for part in text.split("\n"))


def _row(number: int, values: list, text_style: int = _TEXT_STYLE) -> str:
    """One row of the sheet's XML, with a height that shows its wrapped text in full.

    Excel fits a row's height to its wrapped text when it shows the row (a height that
    is not ``customHeight`` is only a hint); LibreOffice and WPS show the height the
    file gives. So the file gives an estimate (``_lines``), which need not be exact.
    """
    cells = []
    add = cells.append
    lines = 1
    for column, room, value in zip(_COLUMN_LETTERS, _ROOM, values, strict=True):
        # The common cases inline, text first: this runs for every cell of the export.
        kind = value.__class__
        if kind is str and value:
            add(_text_cell(f"{column}{number}", value, text_style))
            if len(value) * 2 > room:  # else one line for sure
                lines = max(lines, _lines(value, room))
        elif value is None or kind is str:
            add(f'<c r="{column}{number}" s="{text_style}"/>')
        elif kind is dt.datetime:
            days = (value - _EXCEL_EPOCH) / _DAY
            add(f'<c r="{column}{number}" s="{_DATETIME_STYLE}"><v>{days!r}</v></c>')
        else:
            add(_cell(f"{column}{number}", value, text_style))
    height = f' ht="{min(lines, _MAX_LINES) * _LINE_HEIGHT}"' if lines > 1 else ""
    return f'<row r="{number}"{height}>{"".join(cells)}</row>'


class _Outbox:
    """A file that only collects what is written, for the caller to send on."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def chunks(rows: Iterator[list], heading_lines: list[str]) -> Iterator[bytes]:
    """An XLSX workbook of one sheet (``heading_lines``, the headers, then ``rows``), sent
    every export.CHUNK rows."""
    outbox = _Outbox()
    header_row = len(heading_lines) + 1
    with zipfile.ZipFile(outbox, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in _static_parts().items():
            archive.writestr(name, text)
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(_sheet_start(heading_lines).encode())
            lines = []
            count = 0
            for count, row in enumerate(rows, start=1):
                lines.append(_row(header_row + count, row))
                if count % export.CHUNK == 0:
                    sheet.write("".join(lines).encode())
                    lines.clear()
                    if data := outbox.take():  # empty while the compressor fills a block
                        yield data
            sheet.write(("".join(lines) + _sheet_end(header_row, header_row + count)).encode())
        archive.writestr("xl/workbook.xml",
                         _workbook(_("problem.title"), header_row, header_row + count))
    yield outbox.take()


def document(sheet_name: str, heading_lines: list[str],
             blocks: list[tuple[str, list[str], list[list]]], widths: list[float]) -> bytes:
    """A workbook of one sheet holding several small tables one under another (a report):
    the heading, then each block's title, header row and rows; A4 portrait fitted to the
    width. Cells are written as the export writes them (``_cell``: text never a formula)."""
    letters = [_column_letters(index) for index in range(len(widths))]
    cols = "".join(f'<col min="{n}" max="{n}" width="{width}" customWidth="1"/>'
                   for n, width in enumerate(widths, start=1))
    rows, number = [], 0

    def add(values: list, style: int = _TEXT_STYLE, height: str = "") -> None:
        nonlocal number
        number += 1
        cells = "".join(_cell(f"{letter}{number}", value, style)
                        for letter, value in zip(letters, values, strict=False))
        rows.append(f'<row r="{number}"{height}>{cells}</row>')

    for index, line in enumerate(heading_lines):
        add([line], _TITLE_STYLE if index == 0 else _NOTE_STYLE,
            f' ht="{_TITLE_HEIGHT}" customHeight="1"' if index == 0 else "")
    for title, headers, block_rows in blocks:
        number += 1  # a blank row before each table
        add([title], _NOTE_STYLE)
        add(headers, _HEADER_STYLE)
        for values in block_rows:
            add(values)
    sheet = (
        f'{_XML}<worksheet xmlns="{_MAIN}" xmlns:r="{_RELS}">'
        '<sheetPr><pageSetUpPr fitToPage="1"/></sheetPr>'
        f'<sheetFormatPr defaultRowHeight="{_LINE_HEIGHT}"/><cols>{cols}</cols><sheetData>'
        + "".join(rows) + '</sheetData><pageMargins left="0.4" right="0.4" top="0.6"'
        ' bottom="0.6" header="0.3" footer="0.3"/>'
        f'<pageSetup paperSize="{_PAPER_A4}" orientation="portrait" fitToWidth="1"'
        ' fitToHeight="0"/></worksheet>'
    )
    workbook = (
        f'{_XML}<workbook xmlns="{_MAIN}" xmlns:r="{_RELS}"><sheets>'
        f'<sheet name="{escape(sheet_name, {chr(34): "&quot;"})}" sheetId="1" r:id="rId1"/>'
        "</sheets></workbook>"
    )
    outbox = _Outbox()
    with zipfile.ZipFile(outbox, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in _static_parts().items():
            archive.writestr(name, text)
        archive.writestr("xl/worksheets/sheet1.xml", sheet)
        archive.writestr("xl/workbook.xml", workbook)
    return outbox.take()
