"""The ledger's actions on one problem: every button on the problem page posts here."""

from __future__ import annotations

from starlette.requests import Request

from server.ledger import workflow
from server.validation import ValidationError
from server.views.pages import form_values, problem_page
from server.web import redirect, store, user


async def problem_action(request: Request):
    problem_id = request.path_params["problem_id"]
    action = request.path_params["action"]
    form = await request.form()
    data = form_values(form.multi_items())
    try:
        await store(request).write(workflow.apply, user(request), problem_id, action, data)
    except ValidationError as error:
        return await problem_page(request, action=action, values=data, errors=error.errors,
                                  status=400)
    except workflow.TransitionError as error:
        return await problem_page(request, action=action, values=data, message=error.message,
                                  status=error.status)
    return redirect(f"/problems/{problem_id}?done={action}")
