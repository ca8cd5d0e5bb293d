"""Lab 1 taken through the course in a real browser (issue 18): Chromium driven by Playwright.

As root, with the hub's proxy (``make course-proxy``) and Debian's ``chromium-headless-shell``
(Playwright's own browser download is not used), the test brings up a course of its own
(tests/hub_course.py: logins ``mltest-web-*``, state folder in /tmp, purged at the end, also on a
failure) and, in the browser, as the users would:

1. the student logs in on the hub's login page, opens Nbgrader > Assignment List and fetches
   ``lab1_retrieval``;
2. puts the reference functions (``autograder/labs/lab1_retrieval/reference.py``, as
   tests/submissions/build.py's ``write_submission`` writes a filled submission) into the fetched
   notebook through the Jupyter server's contents API, from the browser's own session, and types an
   answer into the report cell ``report_distances`` in the notebook's editor (the other answers come
   with the upload: Validate wants every answer);
3. validates (the notebook toolbar's Validate button: success) and submits (Assignment List, Submit);
4. the instructor logs in (signed in at step 1, so that the two servers start side by side), opens
   formgrader (Manage Assignments; in a tab of its own: JupyterHub >= 4.1 forbids the iframe of
   JupyterLab's Formgrader panel, ``frame-ancestors 'none'``), collects the submissions, autogrades
   the student's (the lightning icon: the kit's trusted pipeline, which ``course up`` configures in
   the course's ``nbgrader_config.py``; it shows every test cell's points, the report cells waiting
   for a grader), gives ``report_distances`` its points by hand in Manual Grading, then generates
   and releases feedback;
5. the student fetches the feedback (Assignment List, Fetch Feedback), opens its HTML and reads the
   total: the test cells' points and the hand-given report points.

A screenshot of each step goes to ``out/browser/NN-*.png`` (git-ignored), a failing step's as
``NN-FAILED-*.png``, with the formgrader's autograde log and the steps' times beside them. About
70 s on a 2-core machine, most of it the servers' start, Validate and Autograde (each runs the lab).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder.paths import COURSE_DIR, REPO
from hub_course import hub_log, running_course, skip_reason

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
import build  # noqa: E402

#: Debian's chromium-headless-shell (``apt-get install chromium-headless-shell``): the binary itself,
#: not /usr/bin/chromium-headless-shell, a shell script that would outlive a killed browser's parent.
HEADLESS_SHELL = Path("/usr/lib/chromium/chromium-headless-shell")
INSTRUCTOR, PREFIX = "mltest-web-teacher", "mltest-web-s"
STUDENT = PREFIX + "01"
LAB = "lab1_retrieval"
REPORT = "report_distances"  # the report cell the student answers in the editor and the instructor grades
ANSWER = "All the distances at once: |q|^2 + |x|^2 - 2 q.x, one matrix product, no loop."
OTHER_ANSWERS = "Answered through the contents API by tests/test_browser_course.py."
SHOTS = REPO / "out" / "browser"
VIEWPORT = {"width": 1280, "height": 800}
SLOW = 180_000  # ms: a server's start, Validate and Autograde (each runs the whole lab) on a busy machine


def _skip_reason() -> str | None:
    reason = skip_reason()
    if reason:
        return reason
    if not HEADLESS_SHELL.is_file():
        return (f"Debian's Chromium headless shell is missing ({HEADLESS_SHELL}): "
                f"apt-get install chromium-headless-shell")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (requirements.txt pins it)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def lab_points(lab: str) -> tuple[float, dict[str, float], float]:
    """From the course's source notebook (what ``course up`` generates and releases): the test cells'
    points, each report cell's points, and the lab's total."""
    nb = nbformat.read(COURSE_DIR / "source" / lab / f"{lab}.ipynb", as_version=4)
    graded = [(c.cell_type, c.metadata["nbgrader"]) for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    tests = sum(float(meta["points"]) for kind, meta in graded if kind == "code")
    reports = {meta["grade_id"]: float(meta["points"]) for kind, meta in graded if kind == "markdown"}
    return tests, reports, tests + sum(reports.values())


def graded_cells(nb) -> list[tuple]:
    """What a notebook's graded and solution cells are to nbgrader: id, kind, points, checksum."""
    return [(m.get("grade_id"), c.cell_type, m.get("points"), m.get("checksum"))
            for c in nb.cells if (m := c.metadata.get("nbgrader", {})).get("grade") or m.get("solution")]


def score(text: str) -> tuple[float, float]:
    """``(score, max)`` of the first ``a / b`` in ``text`` (formgrader writes ``4 / 5.5``, feedback ``4.0 / 5.5``)."""
    found = re.search(r"(\d+(?:\.\d+)?) / (\d+(?:\.\d+)?)", text)
    assert found, f"no 'score / max' in {text!r}"
    return float(found.group(1)), float(found.group(2))


class Steps:
    """Numbered screenshots into out/browser, and each step's failure named, with its page and the hub's log."""

    def __init__(self, course):
        self.course, self.count, self.page, self.times = course, 0, None, []
        SHOTS.mkdir(parents=True, exist_ok=True)
        for old in SHOTS.glob("*.png"):
            old.unlink()

    def shot(self, name: str, page=None) -> Path:
        self.count += 1
        path = SHOTS / f"{self.count:02d}-{name}.png"
        (page or self.page).screenshot(path=path)
        return path

    @contextlib.contextmanager
    def step(self, number: int, title: str, page):
        self.page, started = page, time.monotonic()
        try:
            yield
        except Exception as error:
            with contextlib.suppress(Exception):
                self.shot(f"FAILED-step{number}")
            raise AssertionError(f"step {number} ({title}) failed: {error}\n"
                                 f"screenshots in {SHOTS}; the hub's log ends with:\n{hub_log(self.course)}") from error
        finally:
            self.times.append((number, title, time.monotonic() - started))


def no_news(page, course, user: str) -> None:
    """JupyterLab asks a new user once, in a toast, whether to fetch Jupyter's news (when its setting
    ``fetchNews`` is ``none``, the default): answer No, before the toast can close a menu the test opens."""
    plugin = "@jupyterlab/apputils-extension:notification"
    answer = page.request.get(f"{course.url}user/{user}/lab/api/settings/{plugin}")
    assert answer.ok, f"settings of {plugin}: {answer.status}"
    setting = answer.json()
    fetch_news = setting["settings"].get("fetchNews", setting["schema"]["properties"]["fetchNews"]["default"])
    if fetch_news == "none":
        question = page.get_by_text("Would you like to get notified about official Jupyter news?")
        question.wait_for()
        page.get_by_role("button", name="No", exact=True).click()
        question.wait_for(state="hidden")


def log_in(browser, course, user: str):
    """A browser context of its own for ``user``, logged in through the hub's login page, JupyterLab loaded."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(course.url + "hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", course.passwords[user])
    return context, page


def enter(page, course, user: str) -> None:
    """Sign in on the filled login page; wait for the spawned server's JupyterLab (its Nbgrader menu)."""
    page.click("#login_submit")
    wait_for_lab(page, course, user)


def wait_for_lab(page, course, user: str) -> None:
    """Wait for ``user``'s JupyterLab, their server started (its Nbgrader menu), the news question answered."""
    page.wait_for_url(re.compile(rf"/user/{re.escape(user)}/lab"), timeout=SLOW)
    page.get_by_role("menuitem", name="Nbgrader").wait_for(timeout=SLOW)
    no_news(page, course, user)


def assignment_list(page):
    """Nbgrader > Assignment List (the student's Assignments panel); returns the panel."""
    page.get_by_role("menuitem", name="Nbgrader").click()
    page.get_by_role("menuitem", name="Assignment List").click()
    panel = page.locator("#nbgrader-assignment-list")
    panel.wait_for()
    return panel


def close_modal(page, title: str, message: str) -> str:
    """Wait for formgrader's answer (a Bootstrap modal), check it, close it; returns its text."""
    modal = page.locator(".modal")
    modal.wait_for(timeout=SLOW)
    text = modal.inner_text()
    assert modal.locator(".modal-title").inner_text() == title and message in text, text[:3000]
    modal.locator(".modal-footer button").click()
    modal.wait_for(state="detached")
    return text


def test_lab1_through_the_browser(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)
    tests, reports, total = lab_points(LAB)
    assert reports.get(REPORT, 0) > 0, (f"{LAB}'s report cell {REPORT} carries no points in "
                                        f"{COURSE_DIR / 'source' / LAB}: {reports}")
    started = time.monotonic()
    with running_course(students=1, instructor=INSTRUCTOR, student_prefix=PREFIX) as course, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(HEADLESS_SHELL))
        steps = Steps(course)
        try:
            # 1. The student logs in, opens the Assignments panel and fetches the lab. The instructor signs
            #    in at once too (in a browser context of their own): the two servers start side by side.
            student, page = log_in(browser, course, STUDENT)
            teacher, teacher_page = log_in(browser, course, INSTRUCTOR)
            with steps.step(1, "the student logs in and fetches the lab", page):
                steps.shot("student-login")
                teacher_page.click("#login_submit")
                enter(page, course, STUDENT)
                panel = assignment_list(page)
                released = panel.locator("#released_assignments_list > .list_item", has_text=LAB)
                expect(released).to_be_visible()
                steps.shot("student-assignments")
                released.get_by_role("button", name="Fetch").click()
                fetched = panel.locator("#fetched_assignments_list > .list_item", has_text=LAB)
                expect(fetched.get_by_role("button", name="Submit")).to_be_visible()
                steps.shot("student-fetched")

            # 2. The reference functions go into the fetched notebook (contents API, the browser's session);
            #    the report answer is typed in the notebook's editor.
            with steps.step(2, "the student fills in the notebook", page):
                api = f"{course.url}user/{STUDENT}/api/contents/{LAB}/{LAB}.ipynb"
                answer = page.request.get(api)
                assert answer.ok, f"GET {api}: {answer.status} {answer.text()[:500]}"
                released_nb = nbformat.from_dict(answer.json()["content"])
                filled = nbformat.read(build.write_submission(tmp_path, LAB), as_version=4)
                assert graded_cells(filled) == graded_cells(released_nb), (
                    f"notebooks/{LAB}.ipynb (what build.write_submission fills) is not the lab the course released: "
                    f"rebuild them (make notebooks)")
                ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in filled.cells]
                for cell in filled.cells:
                    meta = cell.metadata.get("nbgrader", {})
                    if cell.cell_type == "markdown" and meta.get("solution") and meta["grade_id"] != REPORT:
                        cell.source = OTHER_ANSWERS
                xsrf = next(c["value"] for c in student.cookies()
                            if c["name"] == "_xsrf" and c["path"] == f"/user/{STUDENT}/")
                put = page.request.put(api, headers={"X-XSRFToken": xsrf, "Content-Type": "application/json"},
                                       data=json.dumps({"type": "notebook", "format": "json", "content": filled}))
                assert put.ok, f"PUT {api}: {put.status} {put.text()[:500]}"
                panel = assignment_list(page)
                fetched = panel.locator("#fetched_assignments_list > .list_item", has_text=LAB)
                fetched.locator("a.assignment-notebooks-link").click()
                fetched.locator(".nested_list_item a", has_text=LAB).click()
                notebook = page.locator(".jp-NotebookPanel")
                cell = notebook.locator(".jp-Notebook .jp-Notebook-cell").nth(ids.index(REPORT))
                expect(cell.locator(".jp-RenderedMarkdown")).to_have_text("YOUR ANSWER HERE")
                expect(notebook.locator(".jp-Notebook")).not_to_contain_text("NotImplementedError")
                solution = notebook.locator(".jp-Notebook .jp-Notebook-cell").nth(ids.index("distances"))
                last_line = filled.cells[ids.index("distances")].source.strip().splitlines()[-1].strip()
                expect(solution).to_contain_text(last_line)  # the reference's code, in the editor
                solution.scroll_into_view_if_needed()
                steps.shot("student-filled")
                cell.scroll_into_view_if_needed()
                cell.dblclick()
                cell.locator(".cm-content").click()
                page.keyboard.press("Control+a")
                page.keyboard.type(ANSWER)
                page.keyboard.press("Shift+Enter")
                expect(cell.locator(".jp-RenderedMarkdown")).to_have_text(ANSWER)
                cell.scroll_into_view_if_needed()
                steps.shot("student-notebook")

            # 3. Validate (saves the notebook, then runs it in the student's server), then Submit.
            with steps.step(3, "the student validates and submits", page):
                notebook.locator(".validate-button").click()
                dialog = page.locator(".jp-Dialog")
                expect(dialog).to_contain_text("Validation Results", timeout=SLOW)
                expect(dialog).to_contain_text("Success! Your notebook passes all the tests.")
                steps.shot("student-validated")
                dialog.get_by_role("button", name="Ok").click()
                expect(dialog).to_have_count(0)
                saved = page.request.get(api).json()["content"]
                assert saved["cells"][ids.index(REPORT)]["source"] == ANSWER, "the typed answer was not saved"
                panel = assignment_list(page)
                panel.locator("#fetched_assignments_list > .list_item", has_text=LAB).get_by_role(
                    "button", name="Submit").click()
                submitted = panel.locator("#submitted_assignments_list > .list_item", has_text=LAB)
                expect(submitted.get_by_role("button", name="Fetch Feedback")).to_be_visible()
                expect(submitted).to_contain_text("UTC")  # the submission's timestamp
                steps.shot("student-submitted")

            # 4. The instructor: formgrader's Manage Assignments, Collect, Autograde, Manual Grading, feedback.
            page = teacher_page
            with steps.step(4, "the instructor grades in formgrader", page):
                wait_for_lab(page, course, INSTRUCTOR)
                formgrader = f"{course.url}user/{INSTRUCTOR}/formgrader"
                page.goto(formgrader)
                row = page.locator("#main-table tr", has=page.locator(f'td.name[data-order="{LAB}"]'))
                expect(row.locator("td.status")).to_have_text("released")
                steps.shot("instructor-formgrader")
                row.locator("td.collect a").click()
                close_modal(page, "Success", f"Collecting submission: {STUDENT} {LAB}")
                expect(row.locator("td.num-submissions")).to_have_text("1")
                steps.shot("instructor-collected")
                row.locator("td.num-submissions a").click()
                submission = page.locator("tr", has=page.locator(f'td.student-id[data-order="{STUDENT}"]'))
                expect(submission.locator("td.status")).to_have_text("needs autograding")
                submission.locator("td.autograde a").click()
                log = close_modal(page, "Success", f"Successfully autograded '{LAB}' for student '{STUDENT}'.")
                (SHOTS / "autograde.log").write_text(log)
                assert "Applying preprocessor: TrustedGrades" in log, (
                    f"formgrader's Autograde did not run the kit's trusted pipeline (the block course up writes "
                    f"into the course's nbgrader_config.py); its log is in {SHOTS / 'autograde.log'}")
                # the reference earns every test cell's points; the report cells wait for a grader
                expect(submission.locator("td.status")).to_have_text("needs manual grading")
                assert score(submission.locator("td.score").inner_text()) == (tests, total)
                steps.shot("instructor-autograded")
                page.get_by_role("link", name="Manual Grading").click()
                page.get_by_role("link", name=LAB, exact=True).click()  # the assignment
                page.get_by_role("link", name=LAB, exact=True).click()  # its notebook
                page.get_by_role("link", name=re.compile(r"Submission #1")).click()
                report = page.locator(f"input.score#{REPORT}")
                expect(report.locator("xpath=ancestor::div[contains(@class, 'nbgrader_cell')]")).to_contain_text(ANSWER)
                report.scroll_into_view_if_needed()
                with page.expect_response(lambda r: "/formgrader/api/grade/" in r.url
                                          and r.request.method == "PUT") as saved:
                    report.fill(f"{reports[REPORT]:g}")
                    report.press("Tab")
                grade = saved.value.json()
                assert (grade["name"], grade["manual_score"]) == (REPORT, reports[REPORT]), grade
                steps.shot("instructor-manual-grade")
                page.goto(f"{formgrader}/manage_assignments")  # the grading page has no menu
                row.locator("td.generate-feedback a").click()
                close_modal(page, "Success", f"Successfully generated feedback of '{LAB}'.")
                row.locator("td.release-feedback a").click()
                modal = page.locator(".modal")
                expect(modal).to_contain_text(f"Successfully released feedback of '{LAB}'.", timeout=SLOW)
                steps.shot("instructor-feedback-released")
                close_modal(page, "Success", "released feedback")
            teacher.close()

            # 5. The student fetches the feedback and reads the total in its HTML.
            page = student.pages[0]
            with steps.step(5, "the student fetches the feedback", page):
                panel = assignment_list(page)
                panel.locator("#refresh_assignments_list").click()
                submitted = panel.locator("#submitted_assignments_list > .list_item", has_text=LAB)
                submitted.get_by_role("button", name="Fetch Feedback").click()
                view = submitted.get_by_text("(view feedback)")
                expect(view).to_be_visible()
                steps.shot("student-feedback-fetched")
                view.click()
                page.locator(".jp-DirListing-item", has_text=f"{LAB}.html").dblclick()
                heading = page.frame_locator(".jp-HTMLViewer iframe").get_by_text(re.compile(rf"^{LAB} \(Score: "))
                expect(heading).to_be_visible()
                steps.shot("student-feedback")
                assert score(heading.inner_text()) == (tests + reports[REPORT], total), heading.inner_text()
        finally:
            browser.close()
    seconds = time.monotonic() - started
    lines = [f"step {n} ({title}): {t:.1f} s" for n, title, t in steps.times] + [f"whole test: {seconds:.1f} s"]
    (SHOTS / "timings.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
