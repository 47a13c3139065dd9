// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "hub_internals.hpp"

#include <fibers/futures.hpp>
#include <fibers/log.hpp>
#include <fibers/task.hpp>

#include <condition_variable>
#include <deque>
#include <stdexcept>
#include <string>
#include <thread>

namespace fibers {

namespace detail {

namespace {

void run_callback(future_callback& cb, future_state& state) noexcept {
    try {
        cb.call(state);
    } catch (...) {
        log(log_level::error, "done callback of a future threw: " + describe_exception(std::current_exception()));
    }
}

std::exception_ptr cancelled_error(char const* why) noexcept { return std::make_exception_ptr(cancelled(why)); }

// Submitted work, first in first out, linked through the items. Each item
// holds the pool's reference until it has run or been cancelled.
using work_queue = boost::intrusive::slist<
    future_state,
    boost::intrusive::member_hook<future_state, boost::intrusive::slist_member_hook<>, &future_state::queue_hook>,
    boost::intrusive::cache_last<true>, boost::intrusive::constant_time_size<false>>;

// Work that will never run: its waiters get fibers::cancelled. Called
// without the pool's lock, as the cancel runs the callbacks.
void cancel_all(work_queue& items) noexcept {
    while (!items.empty()) {
        future_state& item = items.front();
        items.pop_front();
        item.cancel();
        intrusive_ptr_release(&item);
    }
}

} // namespace

future_state::~future_state() {
    // A state dropped before completion (no pool ever ran it) still owns
    // its callbacks.
    callbacks_.clear_and_dispose(std::default_delete<future_callback>());
}

bool future_state::cancel() noexcept {
    std::uint8_t seen = pending;
    if (status_.compare_exchange_strong(seen, cancelling, std::memory_order_acq_rel)) {
        finish(cancelled_error("fibers: the future was cancelled"), true);
        return true;
    }
    if (seen == cancelling)
        return true; // another cancel won, and is finishing
    return seen == finished && cancelled_;
}

void future_state::finish(std::exception_ptr error, bool cancelled) noexcept {
    callback_list ready;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = std::move(error);
        cancelled_ = cancelled;
        status_.store(finished, std::memory_order_release);
        waiters_.wake_all();
        while (!watchers_.empty()) {
            future_watcher& w = watchers_.front();
            watchers_.pop_front();
            w.notify(w); // may let its owner go once we unlock: touched no more
        }
        ready.swap(callbacks_);
    }
    while (!ready.empty()) {
        std::unique_ptr<future_callback> cb(&ready.front());
        ready.pop_front();
        run_callback(*cb, *this);
    }
}

bool future_state::finish_if_unwinding() noexcept {
    try {
        throw;
    } catch (forced_unwind const&) {
        finish(cancelled_error("fibers: the work's hub closed before it finished"), true);
        return true;
    } catch (...) {
        return false;
    }
}

bool future_state::wait(deadline until) {
    switchpoint();
    if (done())
        return true;
    std::unique_lock<std::mutex> lock(mutex_);
    // Woken only by finish().
    if (status_.load(std::memory_order_relaxed) == finished)
        return true;
    published_wait note("future", waited_object::primitive, this, publication_deadline(until));
    return waiters_.wait(lock, until);
}

void future_state::wait_to_end() noexcept {
    try {
        wait(std::nullopt); // through the hub, if it still serves us
        return;
    } catch (...) {
        // Interrupted again, or no hub to wait through: block the thread.
    }
    struct blocker : future_watcher {
        std::condition_variable wake;
        bool fired = false;
    } b;
    b.notify = [](future_watcher& w) noexcept {
        auto& self = static_cast<blocker&>(w);
        self.fired = true;
        self.wake.notify_one();
    };
    std::unique_lock<std::mutex> lock(mutex_);
    if (status_.load(std::memory_order_relaxed) == finished)
        return;
    watchers_.push_front(b);
    b.wake.wait(lock, [&b] { return b.fired; });
}

void future_state::add_callback(future_callback* owned) {
    std::unique_ptr<future_callback> cb(owned);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (status_.load(std::memory_order_relaxed) != finished) {
            callbacks_.push_back(*cb.release());
            return;
        }
    }
    run_callback(*cb, *this);
}

bool future_state::add_watcher(future_watcher& w) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (status_.load(std::memory_order_relaxed) == finished)
        return false;
    watchers_.push_front(w);
    return true;
}

void future_state::remove_watcher(future_watcher& w) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (w.is_linked())
        watchers_.erase(watchers_.iterator_to(w));
}

completion_queue::completion_queue(future_state* const* states, std::size_t count)
    : nodes_(count), states_(states, states + count) {
    order_.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        nodes_[i].owner = this;
        nodes_[i].index = i;
        nodes_[i].notify = &on_done;
    }
    // Lock order: a state's mutex, then ours (on_done runs under the
    // former); so ours is never held while a state's is taken.
    for (std::size_t i = 0; i < count; ++i) {
        if (!states_[i]->add_watcher(nodes_[i])) {
            std::lock_guard<std::mutex> lock(mutex_);
            order_.push_back(i);
        }
    }
}

completion_queue::~completion_queue() {
    // Under each state's mutex: a completer notifying a node holds it, so
    // once this loop is through, no completer can reach the queue.
    for (std::size_t i = 0; i < nodes_.size(); ++i)
        states_[i]->remove_watcher(nodes_[i]);
}

void completion_queue::on_done(future_watcher& w) noexcept {
    auto& n = static_cast<node&>(w);
    completion_queue& q = *n.owner;
    std::lock_guard<std::mutex> lock(q.mutex_);
    q.order_.push_back(n.index); // within the capacity reserved
    q.waiters_.wake_all();
}

bool completion_queue::wait_for(std::size_t n, deadline until) {
    switchpoint();
    std::unique_lock<std::mutex> lock(mutex_);
    published_wait note("futures completing", waited_object::primitive, this, publication_deadline(until));
    while (order_.size() < n) {
        if (!waiters_.wait(lock, until))
            return order_.size() >= n;
    }
    return true;
}

std::size_t completion_queue::next(std::size_t k, deadline until) {
    switchpoint();
    std::unique_lock<std::mutex> lock(mutex_);
    published_wait note("futures completing", waited_object::primitive, this, publication_deadline(until));
    while (order_.size() <= k) {
        if (!waiters_.wait(lock, until))
            throw fibers::timeout();
    }
    return order_[k];
}

void wait_for_states(future_state* const* states, std::size_t size, std::size_t count, deadline until) {
    switchpoint();
    if (count == 0 || count > size)
        count = size;
    std::size_t done = 0;
    for (std::size_t i = 0; i < size && done < count; ++i)
        done += states[i]->done() ? 1 : 0;
    if (done >= count)
        return;
    completion_queue queue(states, size);
    queue.wait_for(count, until);
}

std::size_t default_cpu_pool_size() noexcept {
    unsigned const n = std::thread::hardware_concurrency();
    return n != 0 ? n : 1;
}

// The process-wide pools: never destroyed, as a worker busy at exit may
// still be running (and touching its pool) when static destruction ends;
// only shut down, so that nothing new starts and idle workers are joined.
struct global_pool {
    thread_pool* pool;
    explicit global_pool(std::size_t maxsize) : pool(new thread_pool(maxsize)) {}
    global_pool(global_pool const&) = delete;
    global_pool& operator=(global_pool const&) = delete;
    ~global_pool();
};

} // namespace detail

using detail::future_state;

pool::pool(std::size_t maxsize) : maxsize_(maxsize) {
    if (maxsize == 0)
        throw std::invalid_argument("fibers: a pool needs a maxsize of at least 1");
}

// ---- thread_pool ----

struct thread_pool::impl {
    struct worker {
        std::thread thread;
        bool busy = false; // guarded by mutex
    };

    explicit impl(std::size_t n) : maxsize(n) {}

    void work(worker& self) noexcept;
    // At exit: closes, cancels the queue, joins the idle workers and lets
    // the busy ones finish on their own.
    void abandon() noexcept;

    std::size_t const maxsize;
    std::mutex mutex;
    std::condition_variable work_ready;  // for the workers
    detail::waiter_list joiners;         // for join(), from fibers or threads
    detail::work_queue queue;
    std::size_t queued = 0;
    std::size_t idle = 0;  // workers waiting for work
    std::size_t busy = 0;  // items running
    std::size_t live = 0;  // workers that have not exited
    std::deque<worker> workers; // references stay valid as it grows
    bool closed = false;
};

void thread_pool::impl::work(worker& self) noexcept {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
        while (queue.empty() && !closed) {
            ++idle;
            work_ready.wait(lock);
            --idle;
        }
        if (queue.empty())
            break; // closed, and nothing left
        future_state* item = &queue.front();
        queue.pop_front();
        --queued;
        ++busy;
        self.busy = true;
        lock.unlock();
        try {
            item->run();
        } catch (...) {
            detail::log_current_exception("fibers: thread_pool work"); // only a fiber's unwinding gets here
        }
        intrusive_ptr_release(item);
        lock.lock();
        self.busy = false;
        if (--busy == 0 && queue.empty())
            joiners.wake_all();
    }
    --live;
    joiners.wake_all();
}

void thread_pool::impl::abandon() noexcept {
    std::vector<std::thread> idle_threads;
    detail::work_queue dropped;
    {
        std::lock_guard<std::mutex> lock(mutex);
        closed = true;
        dropped.swap(queue);
        queued = 0;
        for (worker& w : workers) {
            if (!w.thread.joinable())
                continue;
            if (w.busy)
                w.thread.detach();
            else
                idle_threads.push_back(std::move(w.thread));
        }
        work_ready.notify_all();
    }
    detail::cancel_all(dropped);
    for (std::thread& t : idle_threads)
        t.join();
}

thread_pool::thread_pool(std::size_t maxsize) : pool(maxsize), impl_(std::make_unique<impl>(maxsize)) {}

thread_pool::~thread_pool() {
    close();
    try {
        join(); // through the hub when called from a fiber
    } catch (...) {
        // Interrupted: the threads are joined below all the same.
    }
    std::deque<impl::worker> workers;
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        workers.swap(impl_->workers);
    }
    for (impl::worker& w : workers)
        if (w.thread.joinable())
            w.thread.join();
}

void thread_pool::enqueue(future_state* item) {
    impl& p = *impl_;
    std::unique_lock<std::mutex> lock(p.mutex);
    if (p.closed) {
        lock.unlock();
        intrusive_ptr_release(item);
        throw error("fibers: submit to a closed thread_pool");
    }
    p.queue.push_back(*item);
    ++p.queued;
    // Idle workers not yet claimed by earlier submissions take it; else a
    // new worker, up to maxsize; else the first worker free.
    if (p.idle >= p.queued || p.workers.size() >= p.maxsize) {
        lock.unlock();
        p.work_ready.notify_one();
        return;
    }
    try {
        impl::worker& w = p.workers.emplace_back();
        ++p.live;
        try {
            w.thread = std::thread([&p, &w] { p.work(w); });
        } catch (...) {
            --p.live;
            p.workers.pop_back();
            throw;
        }
    } catch (...) {
        if (p.live != 0)
            return; // a worker will take it
        p.queue.erase(p.queue.iterator_to(*item)); // with no worker alive, nobody took it off
        --p.queued;
        lock.unlock();
        intrusive_ptr_release(item);
        throw;
    }
}

void thread_pool::close() {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->closed = true;
    impl_->work_ready.notify_all();
}

void thread_pool::join() {
    switchpoint();
    impl& p = *impl_;
    std::unique_lock<std::mutex> lock(p.mutex);
    detail::published_wait note("thread_pool join", detail::waited_object::primitive, this);
    while (!p.queue.empty() || p.busy != 0 || (p.closed && p.live != 0))
        p.joiners.wait(lock, std::nullopt);
    if (!p.closed)
        return;
    std::deque<impl::worker> exited;
    exited.swap(p.workers);
    lock.unlock();
    // They have left their loop: each join is a moment.
    for (impl::worker& w : exited)
        if (w.thread.joinable())
            w.thread.join();
}

std::size_t thread_pool::size() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->workers.size();
}

detail::global_pool::~global_pool() { pool->impl_->abandon(); }

thread_pool& get_io_pool() {
    static detail::global_pool io(20);
    return *io.pool;
}

thread_pool& get_cpu_pool() {
    static detail::global_pool cpu(detail::default_cpu_pool_size());
    return *cpu.pool;
}

// ---- fiber_pool ----

struct fiber_pool::state : std::enable_shared_from_this<fiber_pool::state> {
    // The target of a worker task. If the task never runs (its hub closed
    // first, or it could not be made), its destruction does the worker's
    // bookkeeping instead.
    struct worker_body {
        std::shared_ptr<state> pool;
        bool ran = false;

        explicit worker_body(std::shared_ptr<state> p) noexcept : pool(std::move(p)) {}
        worker_body(worker_body&& other) noexcept
            : pool(std::move(other.pool)), ran(std::exchange(other.ran, true)) {}
        worker_body& operator=(worker_body&&) = delete;
        ~worker_body() {
            if (pool != nullptr && !ran) {
                std::unique_lock<std::mutex> lock(pool->mutex);
                pool->worker_left(lock);
            }
        }
        void operator()() {
            ran = true;
            pool->work();
        }
    };

    state(std::size_t n, hub& h) : maxsize(n), mailbox(&detail::hub_access::mailbox(h)) {}
    ~state() { detail::cancel_all(queue); }

    bool on_hub_thread() const noexcept {
        return detail::thread_hub == mailbox->owner && mailbox->open.load(std::memory_order_acquire);
    }
    void work();
    // A worker is gone; called with the lock held, returns with it released.
    void worker_left(std::unique_lock<std::mutex>& lock) noexcept;
    // Makes a worker task now, on the hub's thread.
    void spawn_here(worker_body body) {
        task t(std::move(body), task_options{"", mailbox->owner});
        t.start();
    }

    std::size_t const maxsize;
    boost::intrusive_ptr<detail::hub_mailbox> const mailbox; // the pool may outlive its hub
    std::mutex mutex;
    detail::waiter_list idle;    // worker tasks waiting for work
    detail::waiter_list joiners; // join(), from fibers or threads
    detail::work_queue queue;
    std::size_t running = 0;
    std::size_t workers = 0; // alive, or about to be made
    bool closed = false;
};

void fiber_pool::state::work() {
    std::unique_lock<std::mutex> lock(mutex);
    std::exception_ptr unwinding;
    for (;;) {
        if (queue.empty()) {
            if (closed)
                break;
            detail::waiter w;
            try {
                detail::published_wait note("fiber_pool work", detail::waited_object::primitive, this);
                idle.wait(lock, std::nullopt, w);
            } catch (...) {
                // The hub is closing (nobody else holds a worker to cancel):
                // a wake meant for this worker goes to another.
                if (w.woken())
                    idle.wake_one();
                unwinding = std::current_exception();
                break;
            }
            continue;
        }
        future_state* item = &queue.front();
        queue.pop_front();
        ++running;
        lock.unlock();
        try {
            item->run();
        } catch (...) {
            unwinding = std::current_exception();
        }
        intrusive_ptr_release(item);
        lock.lock();
        --running;
        if (unwinding)
            break;
        if (running == 0 && queue.empty())
            joiners.wake_all();
    }
    worker_left(lock);
    if (unwinding)
        std::rethrow_exception(unwinding);
}

void fiber_pool::state::worker_left(std::unique_lock<std::mutex>& lock) noexcept {
    --workers;
    detail::work_queue dropped;
    // With its hub closing or closed, or no worker left to run it (one
    // could not be made), the queue never runs.
    if (!mailbox->open.load(std::memory_order_acquire) || workers == 0) {
        if (!mailbox->open.load(std::memory_order_acquire))
            closed = true;
        dropped.swap(queue);
    }
    joiners.wake_all();
    lock.unlock();
    detail::cancel_all(dropped);
}

fiber_pool::fiber_pool(std::size_t maxsize)
    : pool(maxsize), state_(std::make_shared<state>(maxsize, get_hub())) {}

fiber_pool::~fiber_pool() { close(); }

void fiber_pool::enqueue(future_state* item) {
    state& s = *state_;
    {
        std::unique_lock<std::mutex> lock(s.mutex);
        if (s.closed) {
            lock.unlock();
            intrusive_ptr_release(item);
            throw error("fibers: submit to a closed fiber_pool");
        }
        s.queue.push_back(*item);
        if (s.idle.wake_one() || s.workers >= s.maxsize)
            return;
        ++s.workers;
    }
    state::worker_body body(state_);
    if (s.on_hub_thread()) {
        s.spawn_here(std::move(body)); // on failure, the body's end cancels what cannot run
        return;
    }
    // From another thread (or the hub closing): the hub makes the task. A
    // closed hub discards the request, and with it the body.
    struct spawn_request {
        state::worker_body body;
        void operator()() {
            state& pool = *body.pool;
            pool.spawn_here(std::move(body));
        }
    };
    auto* entry = new detail::callback_entry<spawn_request>(spawn_request{std::move(body)});
    if (!detail::hub_access::push_from_anywhere(*s.mailbox, *entry)) {
        entry->discard(*entry);
        throw error("fibers: the fiber_pool's hub is closed");
    }
}

void fiber_pool::close() {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->closed = true;
    state_->idle.wake_all();
}

void fiber_pool::join() {
    switchpoint();
    state& s = *state_;
    std::unique_lock<std::mutex> lock(s.mutex);
    detail::published_wait note("fiber_pool join", detail::waited_object::primitive, this);
    while (!s.queue.empty() || s.running != 0 || (s.closed && s.workers != 0))
        s.joiners.wait(lock, std::nullopt);
}

std::size_t fiber_pool::size() const {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->workers;
}

} // namespace fibers
