import type { Socket, ManagerOptions, SocketOptions } from "socket.io-client";

export type Token = string | (() => string | Promise<string>);

export interface HeraldClientOptions {
  /** Herald's base URL; in a browser, defaults to the page's origin. */
  url?: string;
  /** A client token your backend signed (JWT, HS256, sub = the subscriber's id), or a Herald
   * session token; a function is called on every connect and request. */
  token: Token;
  fetch?: typeof fetch;
  reconnectionAttempts?: number;
  reconnectionDelay?: number;
  reconnectionDelayMax?: number;
  transports?: ("websocket" | "polling")[];
  socketOptions?: Partial<ManagerOptions & SocketOptions>;
  /** Connect at once (default true); else call connect(). */
  autoConnect?: boolean;
}

/** `notification:new`, as Herald sends it. */
export interface Notification {
  id: number;
  type: string;
  title: string;
  message: string;
  data: Record<string, unknown>;
  priority: "low" | "normal" | "high" | "urgent";
  isRead: boolean;
  createdAt: string | null;
  expiresAt: string;
  telemetryId?: string | null;
}

export interface InboxItem {
  id: number;
  type: string;
  title: string;
  message: string;
  data: Record<string, unknown>;
  priority: string;
  status: string;
  isRead: boolean;
  readAt: string | null;
  deliveredAt: string | null;
  ackedAt: string | null;
  createdAt: string;
  expiresAt: string;
}

export interface InboxPage {
  items: InboxItem[];
  page: number;
  limit: number;
  total: number;
  pages: number;
}

export interface ReadEvent {
  ids: number[];
  all: boolean;
  unreadCount: number;
}

export type ConnectionState = "connecting" | "online" | "reconnecting" | "offline";

export interface StatusEvent {
  state: ConnectionState;
  reconnects: number;
  serverId?: string;
  userId?: number | string;
  socketId?: string;
  attempt?: number;
  reason?: string;
  gaveUp?: boolean;
  attempts?: number;
  authError?: string;
  signingIn?: boolean;
}

export interface SignedIn {
  userId: number | string;
  socketId: string;
  serverId: string;
  [key: string]: unknown;
}

export interface Events {
  notification: Notification;
  read: ReadEvent;
  unreadCount: number;
  status: StatusEvent;
  authError: { message?: string };
  reconnect: SignedIn;
  broadcast: { title: string; message: string; [key: string]: unknown };
}

export class HeraldError extends Error {
  status: number;
  code?: string;
  details?: unknown;
  body: unknown;
}

export class HeraldClient {
  constructor(options: HeraldClientOptions);
  /** The Socket.IO socket underneath (null before connect()). */
  socket: Socket | null;
  state: ConnectionState;
  reconnects: number;
  readonly ready: Promise<SignedIn>;
  readonly connected: boolean;
  readonly unreadCount: number | null;
  on<E extends keyof Events>(event: E, listener: (value: Events[E]) => void): () => void;
  off<E extends keyof Events>(event: E, listener: (value: Events[E]) => void): void;
  connect(): this;
  /** A new token (or token function) for the next connect and every request from now. */
  setToken(token: Token): this;
  close(): void;
  inbox(options?: { unread?: boolean; page?: number; limit?: number }): Promise<InboxPage>;
  refreshUnreadCount(): Promise<number>;
  markRead(ids?: number | number[] | "all"): Promise<{ marked: number[] }>;
}

export function createHeraldClient(options: HeraldClientOptions): HeraldClient;
