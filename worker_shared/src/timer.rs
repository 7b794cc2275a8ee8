//! A timer that may be kept across awaits: it wakes whichever task polled it last.
//!
//! worker's `Delay` keeps the waker of its first poll. A timer kept across the items of a
//! stream is polled by other tasks where the runtime pulls that stream (each pull of a
//! response body is a task of its own) or where `select_all` merges it (each item gets a new
//! waker): a `Delay` there would wake a finished task and never its reader. This one stores
//! the waker of every poll, so one timer can serve a whole silence or a whole call.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use worker::wasm_bindgen::closure::Closure;
use worker::wasm_bindgen::JsCast;

#[derive(Default)]
struct Shared {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// Fires once, `after` the moment it was made; pending until then. Dropped early, it clears
/// its `setTimeout`.
pub struct Timer {
    shared: Rc<Shared>,
    /// The callback `setTimeout` holds; kept alive as long as the timer may fire.
    _callback: Closure<dyn FnMut()>,
    timeout_id: Option<i32>,
}

impl Timer {
    /// A timer armed now, firing `ms` milliseconds from now (at least 1).
    pub fn after_ms(ms: u64) -> Self {
        let shared = Rc::new(Shared::default());
        let on_fire = shared.clone();
        let callback = Closure::wrap(Box::new(move || {
            on_fire.fired.set(true);
            if let Some(waker) = on_fire.waker.borrow_mut().take() {
                waker.wake();
            }
        }) as Box<dyn FnMut()>);
        let global: worker::web_sys::WorkerGlobalScope = worker::js_sys::global().unchecked_into();
        let ms = i32::try_from(ms).unwrap_or(i32::MAX).max(1);
        let armed = global.set_timeout_with_callback_and_timeout_and_arguments_0(
            callback.as_ref().unchecked_ref(),
            ms,
        );
        let timeout_id = match armed {
            Ok(id) => Some(id),
            // The runtime refused the timer (it never does): firing at once bounds the wait
            // rather than leaving it unbounded.
            Err(_) => {
                shared.fired.set(true);
                None
            }
        };
        Timer {
            shared,
            _callback: callback,
            timeout_id,
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.fired.get() {
            return Poll::Ready(());
        }
        let mut waker = self.shared.waker.borrow_mut();
        match waker.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if self.shared.fired.get() {
            return;
        }
        if let Some(id) = self.timeout_id {
            let global: worker::web_sys::WorkerGlobalScope =
                worker::js_sys::global().unchecked_into();
            global.clear_timeout_with_handle(id);
        }
    }
}
