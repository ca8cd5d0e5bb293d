"""python -m autograder course up|down|status: the course on this machine (make course, make course-down)."""

from __future__ import annotations

import argparse
import sys

from autograder.hub.layout import DEFAULT_PORT, DEFAULT_STUDENTS, MAX_STUDENTS, STATE_ENV


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder course", description=__doc__)
    commands = parser.add_subparsers(dest="action", required=True, metavar="{up,down,status}")
    up = commands.add_parser("up", help="start JupyterHub with the instructor's course and the students' logins (root)")
    up.add_argument("--students", type=int, default=DEFAULT_STUDENTS,
                    help=f"number of student logins, student01... (1 to {MAX_STUDENTS}, default {DEFAULT_STUDENTS})")
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the hub's port on 127.0.0.1 (default {DEFAULT_PORT})")
    down = commands.add_parser("down", help="stop the hub, its proxy and every user's server")
    down.add_argument("--purge", action="store_true",
                      help="also delete the course's system users with their homes, their groups' ACL entries "
                           "and the state folder")
    commands.add_parser("status", help="say whether the course runs, and where")
    for command in commands.choices.values():
        command.add_argument("--state", default=None, metavar="DIR",
                             help=f"the course's state folder (default: ${STATE_ENV} or .hub/course)")
    return parser


def _print_course(course) -> None:
    width = max(len(user) for user in course.users)
    print(f"  URL:        {course.url}")
    print("  logins (user / password, demo only):")
    for user in course.users:
        password = course.passwords.get(user) or f"(in {course.state}/logins.json)"
        role = f"instructor: formgrader at {course.url}user/{user}/formgrader" if user == course.instructor else "student"
        print(f"    {user:<{width}}  {password}   {role}")
    print(f"  course:     {course.course_root} (nbgrader course id {course.course_id!r}); exchange {course.exchange}")
    if course.max_score:
        print("  released:   " + ", ".join(f"{lab} ({points:g} pts)" for lab, points in course.max_score.items()))
    print(f"  hub log:    {course.log}")
    print("  stop it:    make course-down   (python -m autograder course down)")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from autograder.hub import CourseError, down, status, up

    try:
        if args.action == "up":
            course = up(students=args.students, port=args.port, state_dir=args.state)
            if course.already_running:
                note = ""
                if len(course.students) != args.students or course.port != args.port:
                    note = (f" (with {len(course.students)} students on port {course.port}; to change them, "
                            f"`make course-down` first)")
                print(f"The course is already running{note}:")
            else:
                print(f"The course is up ({course.seconds:.0f} s):")
            _print_course(course)
        elif args.action == "down":
            stopped = down(state_dir=args.state, purge=args.purge)
            if stopped:
                print("Stopped: " + ", ".join(stopped))
            else:
                print("No course is running" + (f" (state folder {args.state})" if args.state else "")
                      + ": nothing to stop.")
            if args.purge:
                print("Removed the course's users, their homes, their ACL entries and the state folder.")
        else:
            course = status(args.state)
            if course is None:
                print("No course is running.")
                return 1
            print(f"The course is running (hub pid {course.hub_pid}):")
            _print_course(course)
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: `make course-down` stops whatever started", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
