"""nbgrader configuration of the metric-lab course (run nbgrader from this folder).

``python -m autograder grade`` applies its own settings over these in each submission's run (its
preprocessors, time-outs and sandbox: :func:`autograder.grading.run.nbgrader_config`).
"""

import os

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "metric-lab"
c.CourseDirectory.assignment_id = ""
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
