"""Write corpus/generative-ai-applications-by-industry.pdf, the shipped corpus's PDF.

The PDF is committed; run this only to change it (needs `pip install reportlab`):
    python scripts/build_corpus_pdf.py
"""

from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

TITLE = "Generative AI Applications by Industry"

# (heading, paragraphs); a page break follows every section marked True.
SECTIONS = [
    ("Introduction", [
        "Generative AI is used in almost every industry. This report describes typical uses, the "
        "benefits organisations expect and the precautions each field takes. It is part of the "
        "default document collection shipped with ragbot.",
    ], False),
    ("Healthcare", [
        "Hospitals use language models to draft clinical notes from recorded conversations between "
        "doctors and patients, a use called ambient clinical documentation, which reduces the time "
        "physicians spend typing. Models also summarise patient histories and draft replies to "
        "patient messages for a clinician to review.",
        "In drug discovery, generative models propose new molecules and protein structures with "
        "desired properties, shortening the search for candidates. Synthetic medical images help "
        "train diagnostic models without exposing real patient records.",
        "Precautions: outputs must be checked by clinicians, and patient data must be protected "
        "under health privacy laws such as HIPAA in the United States.",
    ], True),
    ("Finance and Banking", [
        "Banks use generative AI to summarise earnings calls and research reports, answer "
        "employee questions about internal policies, and draft responses for customer service. "
        "Analysts use code assistants to write data analysis scripts faster.",
        "Fraud teams combine predictive models that score transactions with generative models that "
        "explain alerts in plain language. Precautions: regulators expect explainable decisions, "
        "so generated text must not replace documented risk models.",
    ], False),
    ("Education", [
        "Tutoring assistants explain concepts step by step, generate practice questions at the "
        "right level and give feedback on essays. Teachers use them to draft lesson plans and "
        "differentiated reading material.",
        "Precautions: schools worry about plagiarism and over-reliance, so many redesign "
        "assignments to include oral explanations or in-class writing.",
    ], True),
    ("Software Development", [
        "Code assistants suggest completions, write unit tests, explain legacy code and translate "
        "between programming languages. In a controlled experiment published in 2023, developers "
        "using an AI pair programmer completed a coding task about 55 percent faster than those "
        "without it.",
        "Precautions: generated code can contain security vulnerabilities or licensed snippets, so "
        "it goes through the same review and testing as human-written code.",
    ], False),
    ("Media, Entertainment and Marketing", [
        "Studios use image and video generators for storyboards, concept art and visual effects. "
        "Game developers generate textures, dialogue and background characters. Marketing teams "
        "produce many variations of advertising copy and product images and test which performs "
        "best.",
        "Precautions: contracts increasingly cover the use of actors' voices and likenesses, and "
        "brands label synthetic content.",
    ], True),
    ("Retail and Customer Service", [
        "Retailers write product descriptions at scale and offer shopping assistants that answer "
        "questions about products. Customer service chatbots grounded in company documentation "
        "resolve common requests and hand complex cases to human agents, along with a summary of "
        "the conversation.",
    ], False),
    ("Manufacturing and Engineering", [
        "Generative design software proposes part shapes that meet strength and weight "
        "constraints, often producing lighter components for aircraft and cars. Maintenance "
        "technicians ask assistants grounded in equipment manuals how to diagnose a fault.",
    ], False),
    ("Legal Services", [
        "Law firms use generative AI to review contracts, summarise case files and draft "
        "documents. Because models can invent case citations, every reference must be verified "
        "before a document is filed with a court.",
    ], True),
    ("Common Lessons", [
        "Across industries, the most successful projects start with a narrow task, ground the "
        "model in trusted documents with retrieval-augmented generation, keep a human reviewer "
        "for consequential outputs, and measure quality before and after deployment.",
    ], False),
]


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "corpus" / "generative-ai-applications-by-industry.pdf"
    styles = getSampleStyleSheet()
    story = [Paragraph(TITLE, styles["Title"]), Spacer(1, 12)]
    for heading, paragraphs, page_break in SECTIONS:
        story.append(Paragraph(heading, styles["Heading2"]))
        for text in paragraphs:
            story.append(Paragraph(text, styles["BodyText"]))
            story.append(Spacer(1, 6))
        if page_break:
            story.append(PageBreak())
    doc = SimpleDocTemplate(str(out), pagesize=A4, title=TITLE, author="ragbot", invariant=True)
    doc.build(story)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
